// The round trip: every Internet message of tests/corpus -> the forward Converter -> import
// file bytes -> ReadImportFile -> (as if a cc:Mail user had sent it out again) ->
// ConvertExportMessage -> GMime parses the result: the subject, the text and every attachment
// byte for byte equal to the original's. What the way in loses on purpose is listed in
// kLossy, each with its reason; the test also fails when a listed loss does not happen, so
// the list stays exact (docs/FORMAT.md §11.4).
#include <dirent.h>
#include <gmime/gmime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "ccmail/format/converter.h"
#include "ccmail/submitter/to_mime.h"
#include "to_mime_util.h"

namespace ccmail::submitter {
namespace {

using testing::ParseMime;

enum Check { kSubject, kText, kAttachments };
const char* CheckName(Check c) { return c == kSubject ? "subject" : c == kText ? "text" : "attachments"; }

// (corpus file, check) -> why the way in cannot keep it.
const std::map<std::pair<std::string, Check>, const char*> kLossy = {
    // Code page limits: what code page 850 lacks becomes '?' on the way in (docs/FORMAT.md §5.2).
    {{"03-plain-utf8.eml", kText}, "the euro sign and the em dash are not in code page 850"},
    {{"08-iso-2022-jp.eml", kSubject}, "Japanese is not in code page 850"},
    {{"08-iso-2022-jp.eml", kText}, "Japanese is not in code page 850"},
    {{"09-koi8r.eml", kSubject}, "Cyrillic is not in code page 850"},
    {{"09-koi8r.eml", kText}, "Cyrillic is not in code page 850"},
    {{"10-cp1252-quotes.eml", kText}, "curly quotes, euro sign and en dash are not in code page 850"},
    // Bytes that were never text: '?' on the way in.
    {{"05-broken-utf8.eml", kText}, "invalid UTF-8 bytes become '?' (GMime drops them)"},
    {{"06-unknown-charset.eml", kText}, "an unknown charset is read as windows-1252 (GMime gives U+FFFD)"},
    {{"52-hostile-controls.eml", kSubject}, "control characters leave the subject line"},
    {{"52-hostile-controls.eml", kText}, "control characters become '?' (GMime stops at the NUL)"},
    // The subject: one line, ( ) for [ ], cut to subject_max (docs/FORMAT.md §3.5).
    {{"11-encoded-words-mixed.eml", kSubject}, "Cyrillic, [ ] and the cut to 60 characters"},
    {{"50-hostile-subject-crlf.eml", kSubject}, "a folded subject becomes one line"},
    {{"53-hostile-brackets.eml", kSubject}, "[ ] become ( ) (Import 8.3)"},
    // The text: what the way in chose or wrote instead (docs/FORMAT.md §5.3).
    {{"16-html-only.eml", kText}, "HTML without a text/plain alternative is rendered as text"},
    {{"17-related-html.eml", kText}, "HTML without a text/plain alternative is rendered as text"},
    {{"30-deep-nesting.eml", kText}, "the text is deeper than max_nesting_depth"},
    {{"31-digest.eml", kText}, "the digest's messages are text items titled by their subjects"},
    {{"35-partial.eml", kText}, "message/partial is a file, the message has no text"},
    {{"36-long-line.eml", kText}, "a line longer than text_item_max is broken between text items"},
    {{"38-huge-body-many-items.eml", kText}, "a body over max_items text items goes into UNNAMED.TXT"},
    {{"38-huge-body-many-items.eml", kAttachments}, "UNNAMED.TXT is an attachment of its own"},
    {{"43-no-body.eml", kText}, "an empty text item is never written: a placeholder says why"},
    {{"44-empty-body.eml", kText}, "an empty text item is never written: a placeholder says why"},
    {{"45-whitespace-body.eml", kText}, "an empty text item is never written: a placeholder says why"},
    // Files: at most max_file_items; an attached message's files follow it (docs/FORMAT.md §5.4).
    {{"27-many-attachments.eml", kAttachments}, "40 files, max_file_items is 16 (the rest are named in a notice)"},
    {{"29-forward-nested.eml", kAttachments}, "the file of the attached message is a file of the message"},
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// Line ends as LF, no trailing line ends: the way in writes CRLF lines and the way back
// ends a text part without its last line end.
std::string NormalText(std::string s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    out.push_back(s[i] == '\r' ? '\n' : s[i]);
  }
  while (!out.empty() && (out.back() == '\n')) out.pop_back();
  return out;
}

std::string PartBytes(GMimePart* part) {
  GMimeDataWrapper* w = g_mime_part_get_content(part);
  GMimeStream* mem = g_mime_stream_mem_new();
  if (w) g_mime_data_wrapper_write_to_stream(w, mem);
  GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
  std::string out(reinterpret_cast<const char*>(bytes->data), bytes->len);
  g_object_unref(mem);
  return out;
}

// The original, as the way in reads it (docs/FORMAT.md §5.3, §5.4): every inline text/plain
// leaf without a file name is text (in order); an HTML leaf is the text only when there is no
// text/plain alternative (rendered: lossy, noted in html_text); every other leaf is a file.
struct Original {
  std::string subject, text;
  bool html_text = false;
  std::vector<std::string> files;
};

void Walk(GMimeObject* obj, bool in_alternative, Original* o) {
  if (GMIME_IS_MULTIPART(obj)) {
    GMimeMultipart* mp = GMIME_MULTIPART(obj);
    const bool alternative = g_mime_content_type_is_type(g_mime_object_get_content_type(obj), "multipart", "alternative");
    for (int i = 0; i < g_mime_multipart_get_count(mp); ++i) Walk(g_mime_multipart_get_part(mp, i), alternative, o);
    return;
  }
  if (!GMIME_IS_PART(obj)) return;  // an attached message: a text item of its own (lossy)
  GMimeContentType* ct = g_mime_object_get_content_type(obj);
  const char* disposition = g_mime_object_get_disposition(obj);
  const bool attachment = disposition && g_ascii_strcasecmp(disposition, "attachment") == 0;
  const bool named = g_mime_part_get_filename(GMIME_PART(obj)) != nullptr;
  if (!attachment && !named && g_mime_content_type_is_type(ct, "text", "plain")) {
    char* text = g_mime_text_part_get_text(GMIME_TEXT_PART(obj));
    o->text += (o->text.empty() ? "" : "\n") + std::string(text ? text : "");
    g_free(text);
    return;
  }
  if (!attachment && !named && g_mime_content_type_is_type(ct, "text", "html")) {
    if (!in_alternative) o->html_text = true;
    return;
  }
  o->files.push_back(PartBytes(GMIME_PART(obj)));
}

Original ReadOriginal(const std::string& eml) {
  Original o;
  GMimeStream* stream = g_mime_stream_mem_new_with_buffer(eml.data(), eml.size());
  GMimeParser* parser = g_mime_parser_new_with_stream(stream);
  GMimeMessage* msg = g_mime_parser_construct_message(parser, nullptr);
  g_object_unref(parser);
  g_object_unref(stream);
  if (!msg) return o;
  const char* subject = g_mime_message_get_subject(msg);
  o.subject = subject ? subject : "";
  if (GMimeObject* body = g_mime_message_get_mime_part(msg)) Walk(body, false, &o);
  g_object_unref(msg);
  return o;
}

std::vector<std::string> CorpusFiles() {
  const char* src = std::getenv("CCMAIL_SOURCE_DIR");
  const std::string dir = std::string(src ? src : ".") + "/tests/corpus";
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name.size() > 4 && name.substr(name.size() - 4) == ".eml") out.push_back(name);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ToMimeRoundTrip, CorpusSurvivesTheWayInAndTheWayBack) {
  testing::InitGMime();
  const std::vector<std::string> files = CorpusFiles();
  ASSERT_GE(files.size(), 50u) << "tests/corpus not found (CCMAIL_SOURCE_DIR)";
  const char* src = std::getenv("CCMAIL_SOURCE_DIR");
  ReverseSettings rs = testing::TestReverseSettings();
  auto map = testing::TestMap();
  std::set<std::pair<std::string, Check>> lost;
  int compared = 0;
  for (const std::string& name : files) {
    SCOPED_TRACE(name);
    const std::string eml = ReadFile(std::string(src) + "/tests/corpus/" + name);
    // The way in.
    format::Converter conv(rs.format);
    format::ConvertInput in;
    in.data = eml.data();
    in.length = eml.size();
    in.envelope_sender = "bob@partner.example";
    in.recipients = {{"jsmith@corp.example", {"Smith, John", "HUBPO2"}}};
    in.received = 1795520000;
    format::StringSink sink;
    Status st = conv.Convert(in, &sink, nullptr);
    ASSERT_TRUE(st.ok()) << st.ToString();
    format::ReadResult file = format::ReadImportFile(sink.str(), rs.format, {.detect_layout = true});
    ASSERT_TRUE(file.ok()) << file.violations.front().reason;
    ASSERT_FALSE(file.messages.empty());
    // As if John Smith sent it on to the Internet: his name on From, an Internet recipient.
    format::ImportMessage m = file.messages.front();
    m.from = "Smith, John at HUBPO2";
    m.to = {"back@partner.example at INTERNET"};
    m.cc.clear();
    m.bcc.clear();
    OutgoingMessage out;
    Refusal refusal;
    st = ConvertExportMessage(m, "HUBPO2", *map, rs, &out, &refusal);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_TRUE(refusal.reason.empty()) << refusal.reason;
    auto back = ParseMime(out.mime);
    ASSERT_TRUE(back->message);
    const Original o = ReadOriginal(eml);
    // The way back's text: its untitled text parts (the main text, split or not), in order.
    std::string text;
    std::vector<std::string> attachments;
    for (const auto& leaf : back->leaves) {
      if (leaf.content_type == "text/plain" && leaf.disposition.empty() && leaf.description.empty())
        text += (text.empty() ? "" : "\n") + leaf.data;
      else if (leaf.disposition == "attachment" && leaf.content_type != "text/rfc822-headers")
        attachments.push_back(leaf.data);
    }
    const bool same[] = {back->DecodedSubject() == o.subject, NormalText(text) == NormalText(o.text),
                         attachments == o.files};
    for (Check c : {kSubject, kText, kAttachments}) {
      const bool excused = kLossy.count({name, c}) != 0;
      if (!same[c]) lost.insert({name, c});
      if (!same[c] && !excused) {
        ADD_FAILURE() << name << ": " << CheckName(c) << " differs after the round trip";
        if (c == kSubject) ADD_FAILURE() << "  original \"" << o.subject << "\"\n  back     \"" << back->DecodedSubject() << "\"";
        if (c == kText) ADD_FAILURE() << "  original \"" << NormalText(o.text).substr(0, 300) << "\"\n  back     \"" << NormalText(text).substr(0, 300) << "\"";
        if (c == kAttachments) ADD_FAILURE() << "  original " << o.files.size() << " files, back " << attachments.size();
      }
      if (same[c] && excused) ADD_FAILURE() << name << ": " << CheckName(c) << " is listed as lost but came back equal";
      if (same[c]) ++compared;
    }
  }
  EXPECT_GT(compared, 100);
}

}  // namespace
}  // namespace ccmail::submitter
