// Sends hostile heartbeats to a group, for the namespace tests: correctly
// framed but signed with the wrong key, future- or past-dated, or garbage.
// Only the agent's drop counters and peer table should notice.
//
//   forge_heartbeat --to 239.7.7.7:7946 --iface eth0 --kind wrong-key|garbage|stale
//                   [--key FILE] [--id ID] [--count N]
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <iostream>
#include <random>

#include <CLI/CLI.hpp>

#include "userspace/agent/config.h"
#include "userspace/agent/heartbeat.h"
#include "userspace/dataplane/fd.h"
#include "userspace/dataplane/net.h"

using namespace peerlb;

int main(int argc, char** argv)
{
    CLI::App app{"forge_heartbeat: hostile heartbeats for tests"};
    std::string to, iface, kind, key_file, id = "intruder";
    int count = 10;
    app.add_option("--to", to, "IPv4 group:port")->required();
    app.add_option("--iface", iface)->required();
    app.add_option("--kind", kind)->required()->check(CLI::IsMember({"wrong-key", "garbage", "stale"}));
    app.add_option("--key", key_file, "key to sign with (stale: the real key)");
    app.add_option("--id", id);
    app.add_option("--count", count);
    CLI11_PARSE(app, argc, argv);

    try {
        auto colon = to.rfind(':');
        IpAddress group = parse_ip(to.substr(0, colon));
        const uint16_t port = static_cast<uint16_t>(std::stoi(to.substr(colon + 1)));
        std::vector<uint8_t> key(32, 0x5a); // not the cluster's
        if (!key_file.empty())
            key = load_key(key_file);

        Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        ip_mreqn mreq{};
        mreq.imr_ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
        if (!fd || setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof(mreq))) {
            perror("forge_heartbeat: socket");
            return 1;
        }
        sockaddr_in dst{};
        dst.sin_family = AF_INET;
        dst.sin_port = htons(port);
        dst.sin_addr.s_addr = group.addr.v4;

        std::mt19937 rng(1234);
        timespec ts{};
        clock_gettime(CLOCK_REALTIME, &ts);
        const uint64_t now_ms = uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
        for (int i = 0; i < count; i++) {
            std::vector<uint8_t> datagram;
            if (kind == "garbage") {
                datagram.resize(1 + rng() % 600);
                for (auto& b : datagram)
                    b = static_cast<uint8_t>(rng());
            } else {
                Heartbeat hb;
                hb.node_id = id;
                hb.incarnation = ~0ull - 1; // would outrank any real incarnation
                hb.sequence = 1000 + i;
                hb.interval_ms = 100;
                // stale: an hour in the past, signed with the real key
                hb.sent_unix_ms = kind == "stale" ? now_ms - 3'600'000 : now_ms;
                hb.node_address = parse_ip("10.77.0.250");
                hb.mac = {0x02, 0x66, 0x66, 0x66, 0x66, 0x66};
                hb.load_bp = 0; // the most attractive peer there could be
                datagram = encode_heartbeat(hb, key);
            }
            if (sendto(fd.get(), datagram.data(), datagram.size(), 0,
                       reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) < 0) {
                perror("forge_heartbeat: sendto");
                return 1;
            }
        }
    } catch (const std::exception& e) {
        std::cerr << "forge_heartbeat: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
