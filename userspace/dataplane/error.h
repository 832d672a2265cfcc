// Errors the CLI reports as one line: what failed, and why.
#pragma once

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace peerlb {

// A failure the user can act on; what() is the whole message.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A failed system or libbpf call: the operation and errno's text.
class SystemError : public Error {
public:
    SystemError(const std::string& operation, int err)
        : Error(operation + ": " + std::strerror(err < 0 ? -err : err)), err_(err < 0 ? -err : err) {}
    int code() const { return err_; }

private:
    int err_;
};

} // namespace peerlb
