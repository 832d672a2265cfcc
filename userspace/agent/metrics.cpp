#include "metrics.h"

#include <httplib.h>

#include <fmt/format.h>

#include "../dataplane/error.h"

namespace peerlb {
namespace {

std::string escape_label(const std::string& v)
{
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"')
            out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

} // namespace

MetricsServer::MetricsServer(const Endpoint& listen, std::function<std::string()> render)
    : server_(std::make_unique<httplib::Server>())
{
    server_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
        res.set_content(render(), "text/plain; version=0.0.4");
    });
    const std::string host = format_ip(listen.address);
    if (!server_->bind_to_port(host, listen.port))
        throw Error(fmt::format("metrics: cannot listen on {}:{}", host, listen.port));
    thread_ = std::thread([this] { server_->listen_after_bind(); });
}

MetricsServer::~MetricsServer()
{
    server_->stop();
    if (thread_.joinable())
        thread_.join();
}

MetricsText& MetricsText::family(const std::string& name, const std::string& type,
                                 const std::string& help)
{
    text_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    return *this;
}

MetricsText& MetricsText::sample(const std::string& name,
                                 std::initializer_list<std::pair<std::string, std::string>> labels,
                                 double value)
{
    text_ += name;
    if (labels.size()) {
        text_ += '{';
        bool first = true;
        for (const auto& [k, v] : labels) {
            text_ += fmt::format("{}{}=\"{}\"", first ? "" : ",", k, escape_label(v));
            first = false;
        }
        text_ += '}';
    }
    text_ += fmt::format(" {}\n", value);
    return *this;
}

} // namespace peerlb
