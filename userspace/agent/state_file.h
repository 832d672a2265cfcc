// What the agent keeps across its restarts in the node's state directory
// ([node] state_dir): the incarnation counter (incarnation.h) and the
// drain flag (`peerlb drain`), each written so that a crash leaves the old
// file or the new one, never a part of either.
#pragma once

#include <string>

namespace peerlb {

inline constexpr const char* kDrainFileName = "draining";

// Replaces `path` (in directory `dir`) with `text`: a temporary file,
// fsync, rename, fsync of the directory. Throws Error starting with `what`.
void write_state_file(const std::string& dir, const std::string& path, const std::string& text,
                      const std::string& what);

// Whether this node drains (the file <state_dir>/draining exists).
bool read_drain_flag(const std::string& state_dir);
// Sets or clears it (creating state_dir when missing); throws Error naming
// the path when it cannot.
void write_drain_flag(const std::string& state_dir, bool draining);

} // namespace peerlb
