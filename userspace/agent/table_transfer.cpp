#include "table_transfer.h"

#include <algorithm>

#include <fmt/format.h>

#include "../dataplane/error.h"

namespace peerlb {

std::vector<TableChunk> split_table(std::span<const uint8_t> encoded, uint64_t version,
                                    const std::string& author)
{
    if (encoded.empty() || encoded.size() > kMaxTableBytes)
        throw Error(fmt::format("bucket table: {} bytes encoded, 1..{} fit in table chunks",
                                encoded.size(), kMaxTableBytes));
    const size_t count = table_chunk_count(encoded.size());
    std::vector<TableChunk> out(count);
    for (size_t i = 0; i < count; i++) {
        TableChunk& c = out[i];
        c.version = version;
        c.author = author;
        c.index = static_cast<uint16_t>(i);
        c.count = static_cast<uint16_t>(count);
        c.total_len = static_cast<uint32_t>(encoded.size());
        const auto part = encoded.subspan(i * kTableChunkBytes,
                                          std::min(kTableChunkBytes, encoded.size() - i * kTableChunkBytes));
        c.bytes.assign(part.begin(), part.end());
    }
    return out;
}

std::optional<std::vector<uint8_t>> TableAssembler::add(const TableChunk& c, uint64_t now_ms)
{
    std::erase_if(tables_, [&](const auto& t) { return now_ms - t.second.started_ms > timeout_ms_; });
    const auto key = std::make_pair(c.version, c.author);
    auto it = tables_.find(key);
    if (it != tables_.end() && it->second.total_len != c.total_len)
        tables_.erase(it), it = tables_.end(); // another encoding of the same version: start again
    if (it == tables_.end()) {
        if (tables_.size() >= kMaxTables)
            tables_.erase(std::min_element(tables_.begin(), tables_.end(), [](const auto& a, const auto& b) {
                return a.second.started_ms < b.second.started_ms;
            }));
        Partial p;
        p.started_ms = now_ms;
        p.total_len = c.total_len;
        p.bytes.resize(c.total_len);
        p.have.assign(c.count, false);
        p.missing = c.count;
        it = tables_.emplace(key, std::move(p)).first;
    }
    Partial& p = it->second;
    const size_t offset = size_t(c.index) * kTableChunkBytes;
    if (c.index >= p.have.size() || offset + c.bytes.size() > p.bytes.size())
        return std::nullopt; // not a decoded chunk: nothing of it is kept
    if (p.have[c.index])
        return std::nullopt; // a duplicate (a re-send of what came already)
    std::copy(c.bytes.begin(), c.bytes.end(), p.bytes.begin() + ptrdiff_t(offset));
    p.have[c.index] = true;
    if (--p.missing)
        return std::nullopt;
    std::vector<uint8_t> whole = std::move(p.bytes);
    tables_.erase(it);
    return whole;
}

} // namespace peerlb
