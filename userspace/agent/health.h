// The local health probe (DESIGN.md section 3): an unhealthy node announces
// itself as not routable.
#pragma once

#include <cstdint>
#include <string>

#include "../dataplane/net.h"

namespace peerlb {

// One health probe: a TCP connect to address:port within timeout, and when
// http_path is set an HTTP/1.0 GET of it answered with a 2xx or 3xx status.
// Returns true when healthy; `why` says what failed otherwise.
bool probe_service(const IpAddress& address, uint16_t port, const std::string& http_path,
                   uint32_t timeout_ms, std::string& why);

} // namespace peerlb
