// Escaping of outside text for one output line, and the log applying it to every line.
#include "ccmail/common/escape.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "ccmail/common/log.h"

namespace ccmail {
namespace {

TEST(Escape, ControlCharactersBecomeVisibleEscapes) {
  EXPECT_EQ(EscapeControls("a\tb\rc\nd\x1b[0m\x7f\x01"), "a\\tb\\rc\\nd\\x1b[0m\\x7f\\x01");
  EXPECT_EQ(EscapeControls("plain <x@y> \\ \xc3\xa9"), "plain <x@y> \\ \xc3\xa9");  // UTF-8 and '\' kept
}

TEST(Escape, FieldEscapingRoundTripsEveryByte) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  const std::string escaped = EscapeField(all + "\\x41\\");
  for (unsigned char c : escaped) EXPECT_FALSE(c < 0x20 || c == 0x7f) << static_cast<int>(c);
  EXPECT_EQ(UnescapeField(escaped), all + "\\x41\\");
  EXPECT_EQ(EscapeField("a\\tb"), "a\\\\tb");  // a literal backslash-t is not a TAB
  EXPECT_EQ(UnescapeField("a\\q\\x4"), "a\\q\\x4");  // unknown or short escapes are kept
}

// The log line holds outside text (addresses): a CR/LF must not start a forged line.
TEST(Log, EveryLineIsEscaped) {
  char path[] = "/tmp/ccmail-log-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  fflush(stderr);
  int saved = dup(2);
  ASSERT_GE(saved, 0);
  ASSERT_GE(dup2(fd, 2), 0);
  LogInit("escape-test", LogTarget::kStderr);
  LogInfo("from=<%s> done", "evil\r\nccmail-milter[1]: info: forged\x1b[2J");
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string text(4096, '\0');
  ssize_t n = pread(fd, text.data(), text.size(), 0);
  close(fd);
  unlink(path);
  ASSERT_GT(n, 0);
  text.resize(static_cast<size_t>(n));
  EXPECT_EQ(text.find('\n'), text.size() - 1) << text;  // exactly one line
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_NE(text.find("from=<evil\\r\\nccmail-milter[1]: info: forged\\x1b[2J> done"), std::string::npos) << text;
}

}  // namespace
}  // namespace ccmail
