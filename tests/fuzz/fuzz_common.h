// What the fuzz targets share: the cluster key they sign with, and the way
// a broken property is reported (a message on stderr, then abort(): libFuzzer
// saves the input as crash-* and the run fails).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>

namespace peerlb::fuzz {

// Fixed key for the heartbeat target and its seeds (changing it invalidates
// every signed seed in corpus/heartbeat/: regenerate them, see README.md).
inline constexpr uint8_t kKeyBytes[] = {'p', 'e', 'e', 'r', 'l', 'b', '-', 'f', 'u', 'z', 'z', '-',
                                        'c', 'l', 'u', 's', 't', 'e', 'r', '-', 'k', 'e', 'y', '!'};
inline constexpr std::span<const uint8_t> kKey{kKeyBytes};

[[noreturn]] inline void fail(const char* what, const std::string& detail)
{
    std::fprintf(stderr, "\n*** peerlb fuzz finding: %s\n%s\n", what, detail.c_str());
    std::fflush(stderr);
    std::abort();
}

inline std::string hex(std::span<const uint8_t> bytes)
{
    static const char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (uint8_t b : bytes) {
        out += digits[b >> 4];
        out += digits[b & 0xf];
    }
    return out;
}

} // namespace peerlb::fuzz

#define FUZZ_CHECK(cond, detail)                                                                   \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ::peerlb::fuzz::fail(#cond, (detail));                                                 \
    } while (0)
