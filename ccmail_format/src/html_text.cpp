// html_text.cpp - see html_text.h.
#include "html_text.h"

#include <cctype>
#include <cstdlib>

#include "ccmail/common/ascii.h"

namespace ccmail::format {
namespace {

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) cp = 0xfffd;
  if (cp < 0x80) out->push_back(static_cast<char>(cp));
  else if (cp < 0x800) { out->push_back(static_cast<char>(0xc0 | (cp >> 6))); out->push_back(static_cast<char>(0x80 | (cp & 0x3f))); }
  else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

std::string LowerTagName(std::string_view html, size_t i) {
  std::string name;
  if (i < html.size() && html[i] == '/') ++i;
  while (i < html.size() && (std::isalnum(static_cast<unsigned char>(html[i]))) && name.size() < 16)
    name.push_back(ToLowerAscii(html[i++]));
  return name;
}

}  // namespace

std::string HtmlToText(std::string_view html) {
  std::string out;
  out.reserve(html.size() / 2);
  bool space_pending = false;
  auto newline = [&] {
    while (!out.empty() && out.back() == ' ') out.pop_back();
    // At most one blank line in a row.
    if (out.size() >= 2 && out[out.size() - 1] == '\n' && out[out.size() - 2] == '\n') return;
    if (!out.empty()) out.push_back('\n');
    space_pending = false;
  };
  size_t i = 0;
  while (i < html.size()) {
    char c = html[i];
    if (c == '<') {
      if (html.compare(i, 4, "<!--") == 0) {
        size_t e = html.find("-->", i + 4);
        i = e == std::string_view::npos ? html.size() : e + 3;
        continue;
      }
      const bool closing = i + 1 < html.size() && html[i + 1] == '/';
      std::string tag = LowerTagName(html, i + 1);
      size_t e = html.find('>', i);
      size_t after = e == std::string_view::npos ? html.size() : e + 1;
      if (!closing && (tag == "script" || tag == "style" || tag == "head" || tag == "title")) {
        // Skip to the matching end tag.
        std::string end = "</" + tag;
        size_t j = after;
        for (;;) {
          j = html.find("</", j);
          if (j == std::string_view::npos) { after = html.size(); break; }
          if (LowerTagName(html, j + 1) == tag) {
            size_t k = html.find('>', j);
            after = k == std::string_view::npos ? html.size() : k + 1;
            break;
          }
          j += 2;
        }
      } else if (tag == "br" || tag == "p" || tag == "div" || tag == "tr" || tag == "li" || tag == "table" ||
                 tag == "blockquote" || tag == "pre" || (tag.size() == 2 && tag[0] == 'h' && std::isdigit(static_cast<unsigned char>(tag[1])))) {
        newline();
        if (tag == "li" && !closing) out += "* ";
      } else if (tag == "td" || tag == "th") {
        space_pending = true;
      }
      i = after;
      continue;
    }
    if (c == '&') {
      // Look for the ';' only a few bytes ahead: a body of bare '&' must stay linear.
      size_t semi = html.substr(i, 12).find(';');
      if (semi != std::string_view::npos) semi += i;
      if (semi != std::string_view::npos && semi - i <= 10) {
        std::string_view ent = html.substr(i + 1, semi - i - 1);
        uint32_t cp = 0;
        if (!ent.empty() && ent[0] == '#') {
          std::string num(ent.substr(1));
          char* endp = nullptr;
          long v = (!num.empty() && (num[0] == 'x' || num[0] == 'X')) ? std::strtol(num.c_str() + 1, &endp, 16)
                                                                       : std::strtol(num.c_str(), &endp, 10);
          if (endp && *endp == '\0' && v > 0) cp = static_cast<uint32_t>(v > 0x10ffff ? 0xfffd : v);
        } else if (ent == "amp") cp = '&';
        else if (ent == "lt") cp = '<';
        else if (ent == "gt") cp = '>';
        else if (ent == "quot") cp = '"';
        else if (ent == "apos") cp = '\'';
        else if (ent == "nbsp") cp = ' ';
        else if (ent == "euro") cp = 0x20ac;
        else if (ent == "copy") cp = 0xa9;
        else if (ent == "auml") cp = 0xe4;
        else if (ent == "ouml") cp = 0xf6;
        else if (ent == "uuml") cp = 0xfc;
        else if (ent == "szlig") cp = 0xdf;
        else if (ent == "eacute") cp = 0xe9;
        if (cp != 0) {
          if (space_pending && !out.empty() && out.back() != '\n') out.push_back(' ');
          space_pending = false;
          if (cp == ' ') space_pending = true;
          else AppendUtf8(cp, &out);
          i = semi + 1;
          continue;
        }
      }
    }
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space_pending = true;
      ++i;
      continue;
    }
    if (space_pending && !out.empty() && out.back() != '\n') out.push_back(' ');
    space_pending = false;
    out.push_back(c);
    ++i;
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (!out.empty()) out.push_back('\n');
  return out;
}

}  // namespace ccmail::format
