// html_text.h (private) - readable plain text from an HTML-only body.
//
//   Not a renderer: tags are dropped, block ends (p, div, br, tr, li, h1-h6)
//   become line breaks, script/style/head contents vanish, common entities and
//   numeric references are decoded, white space inside lines collapses.
#pragma once

#include <string>
#include <string_view>

namespace ccmail::format {

std::string HtmlToText(std::string_view utf8_html);

}  // namespace ccmail::format
