// The agent's incarnation: a number that grows at every start, kept in
// <state_dir>/incarnation. Peers tell a restart (a higher incarnation) from
// a replay (a lower one) by it, so it must not come from the wall clock: a
// node restarted with its clock behind its previous start would otherwise
// look like a replay of itself.
#pragma once

#include <cstdint>
#include <string>

namespace peerlb {

inline constexpr const char* kIncarnationFileName = "incarnation";

// The file's path under state_dir.
std::string incarnation_path(const std::string& state_dir);

// Reads the previous incarnation (a decimal number; 0 when the file is
// absent), writes previous + 1 back atomically (temporary file, fsync,
// rename, fsync of the directory) and returns it. Creates state_dir when
// missing. Throws Error naming the path when the file cannot be read, is
// not a decimal number, or cannot be written; the old file is then left
// as it was.
uint64_t next_incarnation(const std::string& state_dir);

} // namespace peerlb
