// ccmailctl - the administrator's command (see ctl/include/ccmail/ctl/ctl.h).
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "ccmail/ctl/ctl.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  ccmail::ctl::CtlEnvironment env;
  env.stdout_is_tty = ::isatty(STDOUT_FILENO) == 1;
  return ccmail::ctl::RunCtl(args, std::cout, std::cerr, env);
}
