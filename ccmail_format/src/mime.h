// mime.h (private) - the little GMime glue the converter needs.
//
//   EnsureGMimeInitialized() calls g_mime_init() once per process (thread-safe).
//   ForEachDecodedChunk() streams a leaf part's content through its transfer
//   decoder (base64, quoted-printable, uuencode) in 64 KiB steps, so attachment
//   data is never held whole; DecodePart() collects it (for text bodies).
#pragma once

#include <gmime/gmime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "ccmail/common/status.h"

namespace ccmail::format {

void EnsureGMimeInitialized();

// Calls fn for each decoded chunk; stops early when fn returns a non-ok Status.
// kIoError when the underlying stream fails to read.
Status ForEachDecodedChunk(GMimePart* part, const std::function<Status(std::string_view)>& fn);
Status DecodePart(GMimePart* part, std::string* out);
// Bytes of the part's content as sent (before transfer decoding): 0 without content, -1
// when the stream cannot tell.
gint64 EncodedLength(GMimePart* part);

// RAII for GObject references.
struct GObjectUnref {
  void operator()(gpointer p) const { if (p) g_object_unref(p); }
};

}  // namespace ccmail::format
