// to_mime_util.h - helpers of the to_mime tests: EXPORT text by hand, MIME parsed back with GMime.
#pragma once

#include <gmime/gmime.h>
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ccmail/format/address_map.h"
#include "ccmail/format/reader.h"
#include "ccmail/submitter/to_mime.h"

namespace ccmail::submitter::testing {

inline ReverseSettings TestReverseSettings() {
  ReverseSettings s;
  s.format.local_postoffice = "HUBPO2";
  s.format.timezone = "UTC";
  s.author_domain = "corp.example";
  s.origin_marker = "bridge1.corp.example";
  return s;
}

inline std::shared_ptr<const format::AddressMap> TestMap() {
  format::AddressMapOptions opt{.ccmail_domains = {"ccmail.corp.example"}, .default_postoffice = "HUBPO2", .percent_route_postoffices = {}};
  std::shared_ptr<const format::AddressMap> m;
  Status s = format::AddressMap::Parse(
      "jsmith@corp.example     Smith, John at HUBPO2\n"
      "mgarcia@corp.example    Garcia, Maria at HUBPO2\n"
      "bjones@branch.example   Jones, Bob at BRANCHPO\n",
      "test-map", opt, &m);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return m;
}

// One EXPORT message in the keyword layout (no counts), CRLF lines, from simple pieces.
struct ExportText {
  std::string from = "Smith, John at HUBPO2";
  std::string date = "6/2/98 8:39";
  std::vector<std::string> to = {"jdoe@example.com at INTERNET"}, cc, bcc;
  std::string subject = "Hello";
  // (keyword line, data): "Text item: x" / "File item: NAME" and the data (text with CRLFs,
  // file bytes as hex lines are made by the caller).
  std::vector<std::pair<std::string, std::string>> items = {{"Text item: ", "Hi there\r\n"}};

  std::string Keyword() const {
    std::string t = "Message:\r\nFrom: " + from + "\r\nDate: " + date + "\r\n";
    for (const auto& r : to) t += "To: " + r + "\r\n";
    for (const auto& r : cc) t += "Cc: " + r + "\r\n";
    for (const auto& r : bcc) t += "Bcc: " + r + "\r\n";
    t += "Subject: " + subject + "\r\nContents:\r\n";
    for (const auto& [kw, data] : items) t += kw + "\r\n" + data;
    return t;
  }
};

inline format::ImportMessage ReadOne(const std::string& text, const format::FormatSettings& fs,
                                     bool expect_clean = true) {
  format::ReadResult r = format::ReadImportFile(text, fs, {.detect_layout = true, .exported = true});
  if (expect_clean) {
    for (const auto& v : r.violations) ADD_FAILURE() << "reader: " << v.offset << ": " << v.reason;
  }
  EXPECT_EQ(r.messages.size(), 1u);
  return r.messages.empty() ? format::ImportMessage{} : r.messages.front();
}

inline void InitGMime() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

// A parsed MIME message; parts flattened in order (leaves only).
struct ParsedMime {
  GMimeMessage* message = nullptr;
  struct Leaf {
    std::string content_type;  // "text/plain"
    std::string charset, filename, disposition, encoding, description;
    std::string data;          // decoded bytes
  };
  std::vector<Leaf> leaves;
  std::string Header(const char* name) const {
    const char* v = g_mime_object_get_header(GMIME_OBJECT(message), name);
    return v ? v : "";
  }
  std::string DecodedSubject() const {
    const char* s = g_mime_message_get_subject(message);
    return s ? s : "";
  }
  std::vector<std::string> Addresses(GMimeAddressType type) const {
    std::vector<std::string> out;
    InternetAddressList* l = g_mime_message_get_addresses(message, type);
    for (int i = 0; l && i < internet_address_list_length(l); ++i) {
      InternetAddress* a = internet_address_list_get_address(l, i);
      if (INTERNET_ADDRESS_IS_MAILBOX(a)) out.push_back(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a)));
    }
    return out;
  }
  std::string FromName() const {
    InternetAddressList* l = g_mime_message_get_from(message);
    if (!l || internet_address_list_length(l) < 1) return "";
    const char* n = internet_address_get_name(internet_address_list_get_address(l, 0));
    return n ? n : "";
  }
  ParsedMime() = default;
  ParsedMime(const ParsedMime&) = delete;
  ParsedMime& operator=(const ParsedMime&) = delete;
  ~ParsedMime() { if (message) g_object_unref(message); }
};

inline void CollectLeaves(GMimeObject* parent, GMimeObject* part, gpointer data) {
  (void)parent;
  auto* out = static_cast<ParsedMime*>(data);
  if (!GMIME_IS_PART(part)) return;
  ParsedMime::Leaf leaf;
  GMimeContentType* ct = g_mime_object_get_content_type(part);
  leaf.content_type = std::string(g_mime_content_type_get_media_type(ct)) + "/" + g_mime_content_type_get_media_subtype(ct);
  if (const char* cs = g_mime_content_type_get_parameter(ct, "charset")) leaf.charset = cs;
  if (const char* fn = g_mime_part_get_filename(GMIME_PART(part))) leaf.filename = fn;
  if (const char* d = g_mime_object_get_disposition(part)) leaf.disposition = d;
  if (const char* d = g_mime_object_get_header(part, "Content-Description")) leaf.description = d;
  leaf.encoding = g_mime_content_encoding_to_string(g_mime_part_get_content_encoding(GMIME_PART(part)));
  GMimeDataWrapper* w = g_mime_part_get_content(GMIME_PART(part));
  GMimeStream* mem = g_mime_stream_mem_new();
  if (w) g_mime_data_wrapper_write_to_stream(w, mem);
  GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
  leaf.data.assign(reinterpret_cast<const char*>(bytes->data), bytes->len);
  g_object_unref(mem);
  out->leaves.push_back(std::move(leaf));
}

inline std::unique_ptr<ParsedMime> ParseMime(const std::string& mime) {
  InitGMime();
  auto p = std::make_unique<ParsedMime>();
  GMimeStream* stream = g_mime_stream_mem_new_with_buffer(mime.data(), mime.size());
  GMimeParser* parser = g_mime_parser_new_with_stream(stream);
  p->message = g_mime_parser_construct_message(parser, nullptr);
  g_object_unref(parser);
  g_object_unref(stream);
  if (!p->message) {
    ADD_FAILURE() << "GMime cannot parse:\n" << mime;
    return p;
  }
  GMimeObject* body = g_mime_message_get_mime_part(p->message);
  if (GMIME_IS_MULTIPART(body)) g_mime_multipart_foreach(GMIME_MULTIPART(body), CollectLeaves, p.get());
  else if (body) CollectLeaves(nullptr, body, p.get());
  return p;
}

// Runs ConvertExportMessage on hand-written EXPORT text; the status must be OK.
struct Converted {
  OutgoingMessage out;
  Refusal refusal;
};
inline Converted Convert(const std::string& export_text, const ReverseSettings& s,
                         const format::AddressMap& map, std::string_view po = "HUBPO2") {
  Converted c;
  format::ImportMessage m = ReadOne(export_text, s.format);
  Status st = ConvertExportMessage(m, po, map, s, &c.out, &c.refusal);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return c;
}

}  // namespace ccmail::submitter::testing
