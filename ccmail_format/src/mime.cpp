// mime.cpp - GMime initialisation and streaming content decoding (see mime.h).
#include "mime.h"

#include <errno.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace ccmail::format {

void EnsureGMimeInitialized() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

Status ForEachDecodedChunk(GMimePart* part, const std::function<Status(std::string_view)>& fn) {
  GMimeDataWrapper* wrapper = g_mime_part_get_content(part);
  if (wrapper == nullptr) return Status::Ok();  // no body at all
  GMimeStream* stream = g_mime_data_wrapper_get_stream(wrapper);
  if (stream == nullptr) return Status::Ok();
  GMimeContentEncoding enc = g_mime_data_wrapper_get_encoding(wrapper);
  std::unique_ptr<GMimeFilter, GObjectUnref> filter;
  if (enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
      enc == GMIME_CONTENT_ENCODING_UUENCODE) {
    filter.reset(g_mime_filter_basic_new(enc, FALSE));
  }
  const gint64 length = g_mime_stream_length(stream);
  if (length == 0) return Status::Ok();  // an empty body: a bounded stream of 0 bytes
  if (g_mime_stream_reset(stream) == -1) return Status::FromErrno("rewind MIME part stream", EIO);
  // Not zero-filled, and no larger than the part (most are a few KiB): this runs several
  // times per message (measure, write, once per post office).
  constexpr size_t kStep = 64 * 1024;
  const size_t prespace = 64;
  const size_t step = length > 0 ? static_cast<size_t>(std::clamp<gint64>(length, 4096, kStep)) : kStep;
  std::unique_ptr<char[]> storage(new char[step + prespace]);
  const std::span<char> buf(storage.get(), step + prespace);
  for (;;) {
    ssize_t n = g_mime_stream_read(stream, buf.data() + prespace, buf.size() - prespace);
    if (n < 0) return Status::FromErrno("read message content", EIO);
    char* out;
    size_t outlen, outpre;
    if (n == 0) {
      if (filter) {
        g_mime_filter_complete(filter.get(), buf.data() + prespace, 0, prespace, &out, &outlen, &outpre);
        if (outlen > 0) CCMAIL_RETURN_IF_ERROR(fn(std::string_view(out, outlen)));
      }
      break;
    }
    if (filter) {
      g_mime_filter_filter(filter.get(), buf.data() + prespace, static_cast<size_t>(n), prespace, &out, &outlen, &outpre);
      if (outlen > 0) CCMAIL_RETURN_IF_ERROR(fn(std::string_view(out, outlen)));
    } else {
      CCMAIL_RETURN_IF_ERROR(fn(std::string_view(buf.data() + prespace, static_cast<size_t>(n))));
    }
    if (g_mime_stream_eos(stream)) {
      if (filter) {
        g_mime_filter_complete(filter.get(), buf.data() + prespace, 0, prespace, &out, &outlen, &outpre);
        if (outlen > 0) CCMAIL_RETURN_IF_ERROR(fn(std::string_view(out, outlen)));
      }
      break;
    }
  }
  return Status::Ok();
}

gint64 EncodedLength(GMimePart* part) {
  GMimeDataWrapper* w = g_mime_part_get_content(part);
  GMimeStream* s = w ? g_mime_data_wrapper_get_stream(w) : nullptr;
  return s ? g_mime_stream_length(s) : 0;
}

Status DecodePart(GMimePart* part, std::string* out) {
  out->clear();
  const gint64 len = EncodedLength(part);
  if (len > 0) out->reserve(static_cast<size_t>(len) + 64);  // decoding never grows the data
  return ForEachDecodedChunk(part, [out](std::string_view chunk) {
    out->append(chunk);
    return Status::Ok();
  });
}

}  // namespace ccmail::format
