// to_mime_build.cpp - the RFC 5322/MIME message with GMime, and its derived Message-ID.
#include <glib.h>
#include <gmime/gmime.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>

#include "to_mime_internal.h"

namespace ccmail::submitter::internal {
namespace {

void EnsureGMime() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

struct GObjectUnref {
  void operator()(void* p) const { if (p) g_object_unref(p); }
};
template <typename T>
using GPtr = std::unique_ptr<T, GObjectUnref>;

struct FormatOptionsFree {
  void operator()(GMimeFormatOptions* p) const { g_mime_format_options_free(p); }
};

std::unique_ptr<GMimeFormatOptions, FormatOptionsFree> CrlfOptions() {
  std::unique_ptr<GMimeFormatOptions, FormatOptionsFree> o(g_mime_format_options_new());
  g_mime_format_options_set_newline_format(o.get(), GMIME_NEWLINE_FORMAT_DOS);
  return o;
}

// Lines GMime ends with LF -> CRLF (idempotent for CRLF).
std::string Crlf(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 32);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) out.push_back('\r');
    out.push_back(s[i]);
  }
  return out;
}

void SetContent(GMimePart* part, std::string_view data, GMimeContentEncoding encoding) {
  GPtr<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(data.data(), data.size()));
  GPtr<GMimeDataWrapper> wrapper(g_mime_data_wrapper_new_with_stream(stream.get(), GMIME_CONTENT_ENCODING_DEFAULT));
  g_mime_part_set_content(part, wrapper.get());
  g_mime_part_set_content_encoding(part, encoding);
}

GMimeObject* NewPart(const BodyPart& p) {
  GMimePart* part = nullptr;
  switch (p.kind) {
    case BodyPart::Kind::kText:
    case BodyPart::Kind::kHeaders: {
      part = g_mime_part_new_with_type("text", p.kind == BodyPart::Kind::kText ? "plain" : "rfc822-headers");
      g_mime_object_set_content_type_parameter(GMIME_OBJECT(part), "charset", "utf-8");
      SetContent(part, p.data, GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
      if (p.kind == BodyPart::Kind::kHeaders) {
        g_mime_object_set_disposition(GMIME_OBJECT(part), GMIME_DISPOSITION_ATTACHMENT);
        g_mime_object_set_header(GMIME_OBJECT(part), "Content-Description",
                                 "header block of an earlier Internet message", "utf-8");
      } else if (!p.description.empty()) {
        g_mime_object_set_header(GMIME_OBJECT(part), "Content-Description", p.description.c_str(), "utf-8");
      }
      break;
    }
    case BodyPart::Kind::kFile: {
      const size_t slash = p.mime_type.find('/');
      const std::string type = p.mime_type.substr(0, slash);
      const std::string subtype = slash == std::string::npos ? "octet-stream" : p.mime_type.substr(slash + 1);
      part = g_mime_part_new_with_type(type.c_str(), subtype.c_str());
      g_mime_object_set_disposition(GMIME_OBJECT(part), GMIME_DISPOSITION_ATTACHMENT);
      g_mime_part_set_filename(part, p.file_name.c_str());
      SetContent(part, p.data, GMIME_CONTENT_ENCODING_BASE64);
      break;
    }
  }
  return GMIME_OBJECT(part);
}

std::string AddressList(const std::vector<std::pair<std::string, std::string>>& who, GMimeFormatOptions* opts) {
  GPtr<InternetAddressList> list(internet_address_list_new());
  for (const auto& [name, address] : who) {
    GPtr<InternetAddress> a(internet_address_mailbox_new(name.empty() ? nullptr : name.c_str(), address.c_str()));
    internet_address_set_charset(a.get(), "utf-8");
    internet_address_list_add(list.get(), a.get());
  }
  char* text = internet_address_list_to_string(list.get(), opts, TRUE);
  std::string out = text ? text : "";
  g_free(text);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

void AppendLengthPrefixed(GChecksum* sum, std::string_view field) {
  const std::string len = std::to_string(field.size()) + ":";
  g_checksum_update(sum, reinterpret_cast<const guchar*>(len.data()), static_cast<gssize>(len.size()));
  g_checksum_update(sum, reinterpret_cast<const guchar*>(field.data()), static_cast<gssize>(field.size()));
}

}  // namespace

std::string DeriveMessageId(const format::ImportMessage& m, std::string_view post_office, std::string_view origin_marker) {
  GChecksum* sum = g_checksum_new(G_CHECKSUM_SHA256);
  // Every field, length-prefixed and tagged, so no two different messages share the input.
  AppendLengthPrefixed(sum, "ccmail-bridge way back 1");
  AppendLengthPrefixed(sum, origin_marker);
  AppendLengthPrefixed(sum, post_office);
  AppendLengthPrefixed(sum, m.from);
  AppendLengthPrefixed(sum, m.date);
  AppendLengthPrefixed(sum, m.subject);
  for (const auto* list : {&m.to, &m.cc, &m.bcc}) {
    AppendLengthPrefixed(sum, std::to_string(list->size()));
    for (const std::string& r : *list) AppendLengthPrefixed(sum, r);
  }
  AppendLengthPrefixed(sum, std::to_string(m.items.size()));
  for (const format::ImportItem& item : m.items) {
    AppendLengthPrefixed(sum, item.kind == format::ImportItem::Kind::kFile ? "file" : "text");
    AppendLengthPrefixed(sum, item.title);
    AppendLengthPrefixed(sum, item.data);
  }
  std::string hex = g_checksum_get_string(sum);
  g_checksum_free(sum);
  return "<" + hex.substr(0, 32) + "@" + std::string(origin_marker) + ">";
}

std::string BuildMime(const Envelope& e, const std::vector<BodyPart>& parts) {
  EnsureGMime();
  auto opts = CrlfOptions();
  GPtr<GMimeObject> body;
  if (parts.size() == 1 && parts.front().kind == BodyPart::Kind::kText) {
    body.reset(NewPart(parts.front()));
  } else {
    GMimeMultipart* mixed = g_mime_multipart_new_with_subtype("mixed");
    body.reset(GMIME_OBJECT(mixed));
    // From the Message-ID, so the same message is the same bytes; "=_" never occurs in
    // quoted-printable or base64 text, so the boundary cannot appear in a part.
    std::string boundary = "=_ccmail_" + e.message_id.substr(1, std::min<size_t>(32, e.message_id.size() - 1));
    g_mime_multipart_set_boundary(mixed, boundary.c_str());
    for (const BodyPart& p : parts) {
      GPtr<GMimeObject> part(NewPart(p));
      g_mime_multipart_add(mixed, part.get());
    }
    if (parts.empty()) {
      BodyPart empty;
      GPtr<GMimeObject> part(NewPart(empty));
      g_mime_multipart_add(mixed, part.get());
    }
  }
  std::string head;
  head += "From: " + AddressList({{e.from_name, e.from_address}}, opts.get()) + "\r\n";
  if (!e.to.empty()) head += "To: " + AddressList(e.to, opts.get()) + "\r\n";
  if (!e.cc.empty()) head += "Cc: " + AddressList(e.cc, opts.get()) + "\r\n";
  head += "Subject: " + EncodeUnstructured(e.subject) + "\r\n";
  head += "Date: " + e.date + "\r\n";
  head += "Message-ID: " + e.message_id + "\r\n";
  head += "X-Ccmail-Bridge-Origin: " + e.origin_marker + "\r\n";
  head += "MIME-Version: 1.0\r\n";
  char* text = g_mime_object_to_string(body.get(), opts.get());
  std::string mime = Crlf(head) + Crlf(text ? text : "");
  g_free(text);
  return mime;
}

}  // namespace ccmail::submitter::internal
