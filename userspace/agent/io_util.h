// Helpers the load sources and the health probe share: a poll() timeout
// from a deadline, and outside text as it appears in messages.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace peerlb::io_util {

using Clock = std::chrono::steady_clock;

inline int ms_until(Clock::time_point deadline)
{
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0)
        return 0;
    // Round up so that poll() does not return just before the deadline.
    return int(std::min<long long>(left + 1, 1'000'000));
}

// The text as it appears in messages: trimmed, non-printables escaped, cut.
inline std::string quote(std::string_view text)
{
    std::string out = "'";
    size_t n = 0;
    for (unsigned char c : text) {
        if (++n > 64) {
            out += "...";
            break;
        }
        if (c == '\n')
            out += "\\n";
        else if (c < 0x20 || c >= 0x7f)
            out += fmt::format("\\x{:02x}", c);
        else
            out += char(c);
    }
    return out + "'";
}

} // namespace peerlb::io_util
