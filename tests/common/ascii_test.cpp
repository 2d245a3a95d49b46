// ASCII case folding: letters only, every other byte (UTF-8, Latin-1, controls) kept.
#include "ccmail/common/ascii.h"

#include <gtest/gtest.h>

#include <string>

namespace ccmail {
namespace {

TEST(Ascii, FoldsLettersOnly) {
  EXPECT_EQ(ToLowerAscii("Content-Type: Text/HTML; Charset=UTF-8"), "content-type: text/html; charset=utf-8");
  EXPECT_EQ(ToUpperAscii("smith, john at hubpo2"), "SMITH, JOHN AT HUBPO2");
  EXPECT_EQ(ToLowerAscii('@'), '@');
  EXPECT_EQ(ToUpperAscii('['), '[');  // the byte after 'Z' and before 'a' are not letters
  EXPECT_EQ(ToLowerAscii('`'), '`');
}

TEST(Ascii, KeepsEveryNonLetterByte) {
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const bool letter = (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z');
    if (letter) continue;
    EXPECT_EQ(ToLowerAscii(std::string(1, c)), std::string(1, c)) << "byte " << b;
    EXPECT_EQ(ToUpperAscii(std::string(1, c)), std::string(1, c)) << "byte " << b;
  }
  EXPECT_EQ(ToUpperAscii("m\xc3\xbcller \xe9t\xe9"), "M\xc3\xbcLLER \xe9T\xe9");  // UTF-8 and Latin-1 untouched
}

TEST(Ascii, ComparesIgnoringCase) {
  EXPECT_TRUE(EqualsIgnoreAsciiCase("HubPO2", "HUBPO2"));
  EXPECT_FALSE(EqualsIgnoreAsciiCase("HUBPO2", "HUBPO"));
  EXPECT_FALSE(EqualsIgnoreAsciiCase("\xc9", "\xe9"));  // Latin-1 E acute is not a letter here
  EXPECT_TRUE(EqualsIgnoreAsciiCase("", ""));
  EXPECT_TRUE(StartsWithIgnoreAsciiCase("Re: hello", "RE:"));
  EXPECT_FALSE(StartsWithIgnoreAsciiCase("R", "RE:"));
  EXPECT_TRUE(StartsWithIgnoreAsciiCase("anything", ""));
}

}  // namespace
}  // namespace ccmail
