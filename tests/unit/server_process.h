// Runs `tierlm serve` in the background for a test: on a free loopback port (--port 0; the
// port is read from the server's first line), until the test ends (SIGTERM, then SIGKILL).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_paths.h"

namespace tierlm::testing {

class ServerProcess {
 public:
  // Starts the server with `args` (after "serve --port 0 -q") and waits until it is ready
  // or `timeout_s` has passed; ok() says which.
  explicit ServerProcess(const std::vector<std::string>& args, double timeout_s = 60) {
    static int count = 0;
    log_ = (ScratchDir("serve" + std::to_string(++count)) / "server.log").string();
    std::vector<std::string> argv = {TierlmBinary(), "serve", "--port", "0", "-q"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < until) {
      const std::string text = Log();
      const auto at = text.find("listening on http://");
      if (at != std::string::npos && port_ == 0) {
        const auto colon = text.find(':', at + 20);
        if (colon != std::string::npos) port_ = std::atoi(text.c_str() + colon + 1);
      }
      if (text.find("serve: ready") != std::string::npos) {
        ready_ = port_ > 0;
        return;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~ServerProcess() { Stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  bool ok() const { return ready_; }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // SIGKILL at once (a crash: nothing is flushed) and reap.
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = -1;
  }
  // SIGTERM and wait (SIGKILL after 10 s); the exit status, -1 if it was killed.
  int Stop() {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 1000; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return exit_code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = -1;
    return exit_code_;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  bool ready_ = false;
  int exit_code_ = -1;
  std::string log_;
};

}  // namespace tierlm::testing
