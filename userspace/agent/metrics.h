// Prometheus text metrics over HTTP (GET /metrics) on a local address, served
// from a thread of its own; the page is built on each scrape by `render`.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "config.h"

namespace httplib {
class Server;
}

namespace peerlb {

class MetricsServer {
public:
    // Binds at once (throws Error if the address is taken), serves in a thread.
    MetricsServer(const Endpoint& listen, std::function<std::string()> render);
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

private:
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
};

// Builds the text exposition format line by line.
class MetricsText {
public:
    // Starts a metric family: # HELP and # TYPE lines.
    MetricsText& family(const std::string& name, const std::string& type, const std::string& help);
    // One sample; labels as {"k","v",...} pairs, values escaped.
    MetricsText& sample(const std::string& name,
                        std::initializer_list<std::pair<std::string, std::string>> labels,
                        double value);
    const std::string& text() const { return text_; }

private:
    std::string text_;
};

} // namespace peerlb
