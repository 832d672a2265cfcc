// A bucket table on the wire (DESIGN.md section 5b): an encoded table is
// cut into chunks (TableChunk, one datagram each) and every receiver puts
// them together again. Datagrams get lost: a table missing a chunk is
// never applied, and the chunks of a later re-send complete it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "heartbeat.h"

namespace peerlb {

// The chunks of `encoded` (1..kMaxTableBytes bytes; throws Error otherwise),
// without the sender's stamp (id, incarnation, sequence, time).
std::vector<TableChunk> split_table(std::span<const uint8_t> encoded, uint64_t version,
                                    const std::string& author);

// Chunks being put together, per (version, author). Bounded: at most
// kMaxTables tables at once (a new one evicts the oldest started), each
// forgotten when complete or once `timeout_ms` passed since its first chunk.
class TableAssembler {
public:
    static constexpr size_t kMaxTables = 4;
    explicit TableAssembler(uint64_t timeout_ms) : timeout_ms_(timeout_ms) {}
    void set_timeout(uint64_t timeout_ms) { timeout_ms_ = timeout_ms; }

    // Keeps the chunk (a decoded one: its fields agree); returns the whole
    // table's bytes when this chunk completes it. A chunk whose total
    // disagrees with the others' of its (version, author) restarts that table.
    std::optional<std::vector<uint8_t>> add(const TableChunk& c, uint64_t now_ms);
    // Forgets the tables no better than (version, author) by `keep`.
    template <class Keep>
    void forget_unless(Keep keep)
    {
        std::erase_if(tables_, [&](const auto& t) { return !keep(t.first.first, t.first.second); });
    }
    size_t pending() const { return tables_.size(); }

private:
    struct Partial {
        uint64_t started_ms = 0;
        uint32_t total_len = 0;
        std::vector<uint8_t> bytes;
        std::vector<bool> have;
        size_t missing = 0;
    };
    uint64_t timeout_ms_;
    std::map<std::pair<uint64_t, std::string>, Partial> tables_;
};

} // namespace peerlb
