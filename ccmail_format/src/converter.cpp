// converter.cpp - RFC 5322/MIME -> cc:Mail import-file messages (see converter.h).
//
// Shape of the work: parse with GMime straight from the spool fd (persistent
// stream: part contents stay on disk) or from the caller's bytes, plan the items (main text, attached
// messages, files, notices, Headers), measure every section so /ITEMSIZE counts
// are known before the first byte is written, then, for every target (the
// exporter: one per post office), write one copy of the message per group of
// recipients that fits under header_limit. Parse, plan and measure are shared.
#include "ccmail/format/converter.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <unordered_set>
#include <vector>

#include "ccmail/common/ascii.h"
#include "ccmail/format/rules.h"
#include "codepage.h"
#include "header_text.h"
#include "html_text.h"
#include "mime.h"

namespace ccmail::format {
namespace {

constexpr size_t kTitleMax = 30;  // KB184991: item titles were cut to 30 characters

std::string Trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// An item as planned: text data already in the code page, or a MIME part to stream.
struct Item {
  bool is_file = false;
  std::string title;          // code page, one line
  std::string text;           // text item data, or file data held in memory (UNNAMED.TXT)
  GMimePart* part = nullptr;  // file data streamed from the message (borrowed from the tree)
  uint64_t raw_size = 0;      // decoded bytes of a file item
  // File data that is a text part converted to the code page (UNNAMED.TXT), streamed.
  GMimePart* text_part = nullptr;
  std::string text_charset{};
};

// A text part up to this size (as sent) is decoded once and held for both passes of
// StreamTextLines (deciding the charset, converting); a longer one is decoded twice and never
// held whole.
constexpr gint64 kHeldTextMax = 1 << 20;

// A text part's text in the code page, as ToCpText(ToUtf8(decoded, charset)) without
// protection, streamed.
Status StreamPartText(GMimePart* part, const std::string& charset, CodePage cp, const ChunkFn& out) {
  const gint64 encoded = EncodedLength(part);
  if (encoded >= 0 && encoded <= kHeldTextMax) {
    std::string decoded;
    CCMAIL_RETURN_IF_ERROR(DecodePart(part, &decoded));
    auto held = [&decoded](const ChunkFn& fn) { return decoded.empty() ? Status::Ok() : fn(decoded); };
    return StreamTextLines(held, charset, cp, out);
  }
  return StreamTextLines([part](const ChunkFn& fn) { return ForEachDecodedChunk(part, fn); }, charset, cp, out);
}

std::string ContentTypeOf(GMimeObject* obj) {
  GMimeContentType* ct = g_mime_object_get_content_type(obj);
  if (ct == nullptr) return "application/octet-stream";
  const char* type = g_mime_content_type_get_media_type(ct);
  const char* sub = g_mime_content_type_get_media_subtype(ct);
  return ToLowerAscii(std::string(type ? type : "application") + "/" + (sub ? sub : "octet-stream"));
}

// The addr-spec of a mailbox (IDN form when GMime has one), nullptr when it has none.
const char* MailboxAddress(InternetAddress* a) {
  const char* addr = internet_address_mailbox_get_idn_addr(INTERNET_ADDRESS_MAILBOX(a));
  return addr != nullptr ? addr : internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
}

void CollectAddresses(InternetAddressList* list, std::unordered_set<std::string>* out) {
  if (list == nullptr) return;
  const int n = internet_address_list_length(list);
  for (int i = 0; i < n; ++i) {
    InternetAddress* a = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_MAILBOX(a)) {
      if (const char* addr = MailboxAddress(a)) out->insert(ToLowerAscii(addr));
    } else if (INTERNET_ADDRESS_IS_GROUP(a)) {
      CollectAddresses(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)), out);
    }
  }
}

// GMime keeps header values and boundaries as C strings: a NUL cuts a header line (the
// next line runs into it) and a boundary holding a NUL never matches (every part vanishes).
// Structure lines are where that matters: the top header block, every line starting with
// "--" (a possible boundary) and the header block after one. There a NUL becomes '?', which
// is also what the code page shows for it; data lines (a binary part's bytes) stay untouched.
// Returns the number of bytes replaced.
size_t ReplaceNulsInStructure(std::string* msg) {
  size_t replaced = 0;
  bool in_headers = true;
  size_t pos = 0;
  while (pos < msg->size()) {
    size_t eol = msg->find('\n', pos);
    const size_t end = eol == std::string::npos ? msg->size() : eol + 1;
    std::string_view line(msg->data() + pos, end - pos);
    const bool blank = line == "\n" || line == "\r\n";
    const bool dashes = line.size() >= 2 && line[0] == '-' && line[1] == '-';
    if (in_headers || dashes) {
      for (size_t i = pos; i < end; ++i)
        if ((*msg)[i] == '\0') { (*msg)[i] = '?'; ++replaced; }
    }
    if (dashes) in_headers = true;
    else if (blank) in_headers = false;
    pos = end;
  }
  return replaced;
}

// Reads [offset, offset+length) of fd with pread; when it holds a NUL byte, *whole receives
// all of it (for ReplaceNulsInStructure), else *whole stays empty.
Status ScanForNul(int fd, off_t offset, uint64_t length, std::string* whole) {
  whole->clear();
  std::vector<char> buf(64 * 1024);
  for (uint64_t done = 0; done < length;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), length - done));
    ssize_t n = ::pread(fd, buf.data(), want, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("read message", errno);
    if (n == 0) return Status::FromErrno("message file shorter than offset+length", EIO);
    if (std::memchr(buf.data(), '\0', static_cast<size_t>(n)) != nullptr) {
      whole->resize(static_cast<size_t>(length));
      for (uint64_t got = 0; got < length;) {
        ssize_t m = ::pread(fd, whole->data() + got, static_cast<size_t>(length - got), offset + static_cast<off_t>(got));
        if (m < 0 && errno == EINTR) continue;
        if (m <= 0) return Status::FromErrno("read message", m < 0 ? errno : EIO);
        got += static_cast<uint64_t>(m);
      }
      return Status::Ok();
    }
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

// The caller's bytes (ConvertInput::data) as the GByteArray of a GMime memory stream, without
// copying them: GMime only reads its input stream and its substreams share the array, which
// no stream owns; the bytes are taken back before the array is freed, so this must outlive
// every stream and object parsed from it.
class BorrowedBytes {
 public:
  BorrowedBytes(const char* data, size_t length)
      : array_(g_byte_array_new_take(reinterpret_cast<guint8*>(const_cast<char*>(data)), length)) {}
  ~BorrowedBytes() {
    g_byte_array_steal(array_, nullptr);  // the caller's bytes, not ours to free
    g_byte_array_unref(array_);
  }
  BorrowedBytes(const BorrowedBytes&) = delete;
  BorrowedBytes& operator=(const BorrowedBytes&) = delete;
  GMimeStream* NewStream() const {
    GMimeStream* stream = g_mime_stream_mem_new_with_byte_array(array_);
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), FALSE);
    return stream;
  }

 private:
  GByteArray* array_;
};

// addr-spec of the first mailbox of an address list (a group's first member), "" when none.
std::string FirstMailbox(InternetAddressList* list) {
  if (list == nullptr) return {};
  const int n = internet_address_list_length(list);
  for (int i = 0; i < n; ++i) {
    InternetAddress* a = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_MAILBOX(a)) {
      const char* addr = MailboxAddress(a);
      return addr ? std::string(addr) : std::string();
    }
    if (INTERNET_ADDRESS_IS_GROUP(a)) {
      std::string inner = FirstMailbox(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)));
      if (!inner.empty()) return inner;
    }
  }
  return {};
}

std::string BareAddress(std::string_view s) {
  std::string t = Trimmed(s);
  if (t.size() >= 2 && t.front() == '<' && t.back() == '>') t = Trimmed(t.substr(1, t.size() - 2));
  return ToLowerAscii(t);
}

// One line of decoded header text (for summaries of attached messages).
std::string HeaderText(GMimeObject* obj, const char* name) { return DecodedHeader(obj, name); }

// Walks the MIME tree and plans the items.
class Planner {
 public:
  Planner(const FormatSettings& s) : s_(s) {}

  Status Plan(GMimeMessage* message) {
    Visit(g_mime_message_get_mime_part(message), 1, kMainText);
    return status_;
  }

  // Status is status() (reading the main text can fail).
  std::vector<Item> Finish(GMimeMessage* message, std::vector<std::string>* notices);
  const Status& status() const { return status_; }
  void AddNotice(std::string n) { notices_.push_back(std::move(n)); }

 private:
  static constexpr int kMainText = -1;

  struct TextTarget {
    std::string utf8;
    bool taken = false;
  };

  void Visit(GMimeObject* obj, size_t depth, int target) {
    if (obj == nullptr || !status_.ok()) return;
    if (depth > s_.max_nesting_depth) {
      ++too_deep_;
      return;
    }
    if (GMIME_IS_MULTIPART(obj)) {
      GMimeMultipart* mp = GMIME_MULTIPART(obj);
      const int n = g_mime_multipart_get_count(mp);
      const std::string type = ContentTypeOf(obj);
      if (n == 0) {
        // The boundary never matched: say so instead of showing "(no text)" as if nothing was sent.
        const char* prologue = g_mime_multipart_get_prologue(mp);
        const char* boundary = g_mime_multipart_get_boundary(mp);
        notices_.push_back("a " + type + " part has no parts that could be read (its boundary \"" +
                           std::string(boundary ? boundary : "") + "\" never occurs); " +
                           std::to_string(prologue ? std::strlen(prologue) : 0) + " bytes of it were not converted");
        return;
      }
      if (type == "multipart/alternative" && n > 0) {
        // The text/plain alternative; else a nested multipart (related HTML); else the HTML; else the last.
        GMimeObject* pick = nullptr;
        for (const char* want : {"text/plain", "multipart/", "text/html"}) {
          for (int i = 0; i < n && pick == nullptr; ++i) {
            GMimeObject* child = g_mime_multipart_get_part(mp, i);
            if (ContentTypeOf(child).rfind(want, 0) == 0) pick = child;
          }
          if (pick) break;
        }
        if (pick == nullptr) pick = g_mime_multipart_get_part(mp, n - 1);
        Visit(pick, depth + 1, target);
        return;
      }
      for (int i = 0; i < n; ++i) Visit(g_mime_multipart_get_part(mp, i), depth + 1, target);
      return;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
      GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
      if (inner == nullptr) return;
      // An attached message stays readable: a text item with its header summary and text.
      const int idx = static_cast<int>(attached_.size());
      attached_.push_back(TextTarget{});
      std::string summary;
      for (const char* h : {"From", "To", "Cc", "Date", "Subject"}) {
        std::string v = HeaderText(GMIME_OBJECT(inner), h);
        if (!v.empty()) summary += std::string(h) + ": " + v + "\n";
      }
      summary += "\n";
      attached_[idx].utf8 = summary;
      std::string title = CleanSubjectTitle(HeaderText(GMIME_OBJECT(inner), "Subject"));
      order_.push_back(Slot{Slot::kAttached, idx, title});
      Visit(g_mime_message_get_mime_part(inner), depth + 1, idx);
      return;
    }
    if (!GMIME_IS_PART(obj)) return;
    GMimePart* part = GMIME_PART(obj);
    const std::string type = ContentTypeOf(obj);
    const std::string fname_text = PartFileName(part);
    const char* fname = fname_text.empty() ? nullptr : fname_text.c_str();
    const char* disp = g_mime_object_get_disposition(obj);
    const bool attachment = disp != nullptr && ToLowerAscii(disp) == "attachment";
    const bool texty = type == "text/plain" || type == "text/html" || type == "text/enriched";
    TextTarget& tgt = target == kMainText ? main_text_ : attached_[target];
    if (texty && !attachment && (fname == nullptr || !tgt.taken)) {
      GMimeContentType* ct = g_mime_object_get_content_type(obj);
      const char* cs = ct ? g_mime_content_type_get_parameter(ct, "charset") : nullptr;
      if (target == kMainText && !tgt.taken && type != "text/html" && s_.itemsize) {
        // The main text (it may be the whole message) is streamed in Finish, never held as
        // decoded bytes and UTF-8. HTML needs its whole text; without /ITEMSIZE each line's
        // keyword protection needs the whole line: both stay on the path below.
        main_part_ = part;
        main_charset_ = cs ? cs : "";
        tgt.taken = true;
        return;
      }
      std::string raw;
      status_ = DecodePart(part, &raw);
      if (!status_.ok()) return;
      std::string utf8 = ToUtf8(std::move(raw), cs ? cs : "");
      if (type == "text/html") utf8 = HtmlToText(utf8);
      if (!tgt.taken) {
        if (tgt.utf8.empty()) tgt.utf8 = std::move(utf8);  // the main body: no second copy
        else tgt.utf8 += utf8;
        tgt.taken = true;
      } else {
        // A further inline text part: its own text item, in place.
        const int idx = static_cast<int>(attached_.size());
        attached_.push_back(TextTarget{std::move(utf8), true});
        order_.push_back(Slot{Slot::kAttached, idx, fname ? CleanSubjectTitle(fname) : std::string()});
      }
      return;
    }
    std::string name = fname ? fname : "";
    order_.push_back(Slot{Slot::kFile, static_cast<int>(files_.size()), {}});
    files_.push_back(FilePlan{part, name, type});
  }

  std::string CleanSubjectTitle(const std::string& utf8) {
    FormatSettings t = s_;
    t.subject_max = kTitleMax;
    return CleanSubject(utf8, t);
  }

  // Text (code page, CRLF lines) split into items of at most text_item_max bytes.
  void SplitText(const std::string& title, std::string cp, std::vector<Item>* out) const {
    const size_t max = s_.text_item_max;
    if (cp.size() <= max) {
      out->push_back(Item{false, title, std::move(cp), nullptr, 0});
      return;
    }
    size_t pos = 0;
    while (pos < cp.size()) {
      size_t end = std::min(cp.size(), pos + max);
      std::string chunk;
      if (end < cp.size()) {
        // Search this chunk only (a text without line breaks must stay linear).
        size_t crlf = std::string_view(cp).substr(pos, end - pos).rfind("\r\n");
        if (crlf != std::string_view::npos && crlf > 0) {
          end = pos + crlf + 2;
          chunk = cp.substr(pos, end - pos);
        } else {
          // One line longer than an item: break it (the reader sees two lines).
          end = pos + max - 2;
          chunk = cp.substr(pos, end - pos) + "\r\n";
        }
      } else {
        chunk = cp.substr(pos);
      }
      pos = end;
      out->push_back(Item{false, title, std::move(chunk), nullptr, 0});
    }
  }

  // Whole lines (CRLF) of cp that fit in one text item together with note.
  std::string TruncateText(std::string cp, const std::string& note) const {
    if (cp.size() <= s_.text_item_max) return cp;
    const size_t room = s_.text_item_max - note.size();  // text_item_max >= 256 > note
    size_t cut = cp.rfind("\r\n", room - 2);
    cp.resize(cut == std::string::npos ? 0 : cut + 2);
    return cp + note;
  }

  std::string ToCpText(const std::string& utf8) const {
    std::string cp;
    AppendTextLines(utf8, s_.codepage, !s_.itemsize, &cp);
    return cp;
  }

  struct Slot {
    enum Kind { kAttached, kFile } kind;
    int index;
    std::string title;
  };
  struct FilePlan {
    GMimePart* part;
    std::string name;
    std::string type;
  };

  // The main text as measured: in the code page when `whole`, its size, whether it is blank.
  struct MainText {
    std::string cp;
    uint64_t size = 0;
    bool only_blank = true;
    bool whole = true;
  };
  void MeasureMainText(MainText* main);
  void AddMainText(std::vector<Item>* items, std::set<std::string>* used_names, std::vector<std::string>* notices);
  void AddPartsInOrder(std::vector<Item>* items, std::set<std::string>* used_names, std::vector<std::string>* notices);
  void CapItems(std::vector<Item>* items, std::vector<std::string>* notices) const;
  Item HeadersItem(GMimeMessage* message) const;

  const FormatSettings& s_;
  Status status_;
  TextTarget main_text_;
  GMimePart* main_part_ = nullptr;  // the main text when streamed (main_text_.utf8 stays empty)
  std::string main_charset_;
  std::vector<TextTarget> attached_;
  std::vector<FilePlan> files_;
  std::vector<Slot> order_;
  std::vector<std::string> notices_;  // found while walking the tree
  size_t too_deep_ = 0;
};

std::vector<Item> Planner::Finish(GMimeMessage* message, std::vector<std::string>* notices) {
  std::vector<Item> items;
  std::set<std::string> used_names;
  notices->insert(notices->end(), notices_.begin(), notices_.end());
  AddMainText(&items, &used_names, notices);
  if (!status_.ok()) return {};
  AddPartsInOrder(&items, &used_names, notices);
  CapItems(&items, notices);
  if (s_.headers_item) items.push_back(HeadersItem(message));
  return items;
}

bool IsBlank(std::string_view t) {
  for (char c : t)
    if (c != '\r' && c != '\n' && c != ' ' && c != '\t') return false;
  return true;
}

// A streamed main text is measured here and kept while it is no longer than text items can
// take (max_items * text_item_max bytes); longer, main->whole is false and it is streamed
// again when written.
void Planner::MeasureMainText(MainText* main) {
  if (main_part_ == nullptr) {
    main->cp = ToCpText(main_text_.utf8);
    std::string().swap(main_text_.utf8);  // memory: only the code-page copy stays
    main->size = main->cp.size();
    main->only_blank = IsBlank(main->cp);
    return;
  }
  const uint64_t keep_max = static_cast<uint64_t>(s_.text_item_max) * s_.max_items;
  status_ = StreamPartText(main_part_, main_charset_, s_.codepage, [&](std::string_view c) {
    main->size += c.size();
    if (main->only_blank) main->only_blank = IsBlank(c);
    if (main->whole && main->size <= keep_max) {
      main->cp.append(c);
    } else if (main->whole) {
      main->whole = false;
      std::string().swap(main->cp);
    }
    return Status::Ok();
  });
}

// 1. Main text: split, or UNNAMED.TXT (setting, or when splitting would use up the items).
void Planner::AddMainText(std::vector<Item>* items, std::set<std::string>* used_names,
                          std::vector<std::string>* notices) {
  MainText main;
  MeasureMainText(&main);
  if (!status_.ok()) return;
  // KB178122: never an empty text item; the placeholder says why there is no text.
  if (main.only_blank) {
    main.cp = !main_text_.taken ? "(no text: the message has no text part)\r\n"
              : main.size == 0  ? "(no text: the message text is empty)\r\n"
                                : "(no text: the message text is only white space)\r\n";
    main.size = main.cp.size();
    main_part_ = nullptr;
  }
  const size_t reserve = (s_.headers_item ? 1 : 0) + 1;  // Headers + a possible notice
  const uint64_t pieces = (main.size + s_.text_item_max - 1) / s_.text_item_max;
  if (main.size > s_.text_item_max &&
      (s_.large_body == LargeBody::kFile || pieces + reserve >= s_.max_items)) {
    if (s_.large_body == LargeBody::kSplit)
      notices->push_back("the message text (" + std::to_string(main.size) + " bytes) was too long for " +
                         std::to_string(s_.max_items) + " text items and is attached as UNNAMED.TXT");
    items->push_back(Item{false, "", "The message text is in the attached file UNNAMED.TXT.\r\n", nullptr, 0});
    Item f{true, DosFileName("UNNAMED.TXT", "text/plain", s_, used_names), std::move(main.cp), nullptr, 0};
    f.raw_size = main.size;
    if (main_part_ != nullptr && !main.whole) {  // streamed again when written
      f.text_part = main_part_;
      f.text_charset = main_charset_;
    }
    items->push_back(std::move(f));
    return;
  }
  if (main_part_ != nullptr && !main.whole) {  // not reached with keep_max as above
    main.cp.clear();
    main.cp.reserve(static_cast<size_t>(main.size));
    status_ = StreamPartText(main_part_, main_charset_, s_.codepage, [&main](std::string_view c) {
      main.cp.append(c);
      return Status::Ok();
    });
    if (!status_.ok()) return;
    if (main.cp.size() != main.size) {
      status_ = Status::FromErrno("message content changed while converting", EIO);
      return;
    }
  }
  SplitText("", std::move(main.cp), items);
}

// 2. Attached messages, extra text parts and files, in message order; at most
//    max_file_items files (docs/FORMAT.md §3.8), the others named in a notice.
void Planner::AddPartsInOrder(std::vector<Item>* items, std::set<std::string>* used_names,
                              std::vector<std::string>* notices) {
  size_t files_kept = 0;
  std::vector<std::string> files_left;
  for (const Slot& slot : order_) {
    if (slot.kind == Slot::kFile && files_kept >= s_.max_file_items) {
      const std::string& n = files_[slot.index].name;
      files_left.push_back(n.empty() ? std::string("(unnamed ") + files_[slot.index].type + ")" : n);
      continue;
    }
    if (slot.kind == Slot::kFile) ++files_kept;
    if (slot.kind == Slot::kAttached) {
      std::string cp = ToCpText(attached_[slot.index].utf8);
      if (cp.empty()) cp = attached_[slot.index].taken ? "(no text: this text is empty)\r\n" : "(no text: this part has no text)\r\n";
      SplitText(slot.title, std::move(cp), items);
    } else {
      const FilePlan& fp = files_[slot.index];
      Item f;
      f.is_file = true;
      f.part = fp.part;
      f.title = DosFileName(fp.name, fp.type, s_, used_names);
      items->push_back(std::move(f));
    }
  }
  if (!files_left.empty()) {
    std::string names;
    for (const std::string& n : files_left)
      if (names.size() < 1500) names += (names.empty() ? "" : ", ") + n;
    notices->push_back(std::to_string(files_left.size()) + " more file(s) were not converted (at most " +
                       std::to_string(s_.max_file_items) + " files a message): " + names);
  }
  if (too_deep_ > 0)
    notices->push_back(std::to_string(too_deep_) + " part(s) nested deeper than " +
                       std::to_string(s_.max_nesting_depth) + " levels were not converted");
}

// 3. Item cap: keep the first ones, list the rest in a notice; then the notice item.
void Planner::CapItems(std::vector<Item>* items, std::vector<std::string>* notices) const {
  const size_t tail = s_.headers_item ? 1 : 0;
  const bool need_notice_slot = !notices->empty();
  size_t room = s_.max_items - tail - (need_notice_slot ? 1 : 0);
  if (items->size() > room) {
    room = s_.max_items - tail - 1;
    std::string dropped;
    size_t n = 0;
    for (size_t i = room; i < items->size(); ++i, ++n) {
      const std::string& title = (*items)[i].title;
      if (dropped.size() < 1500) dropped += (dropped.empty() ? "" : ", ") + (title.empty() ? std::string("(text)") : title);
    }
    items->resize(room);
    notices->push_back(std::to_string(n) + " more item(s) were not converted (cc:Mail takes at most " +
                       std::to_string(s_.max_items) + "): " + dropped);
  }
  if (!notices->empty()) {
    std::string text = "ccmail-bridge could not convert all of this message:\n";
    for (const std::string& n : *notices) text += "- " + n + "\n";
    items->push_back(Item{false, "Notice", TruncateText(ToCpText(text), "(list truncated)\r\n"), nullptr, 0});
  }
}

// 4. The original header block (visible recipients, priority, receipts... live here).
Item Planner::HeadersItem(GMimeMessage* message) const {
  char* raw = g_mime_object_get_headers(GMIME_OBJECT(message), nullptr);
  std::string utf8 = ToUtf8(raw ? std::string(raw) : std::string(), "");
  g_free(raw);
  std::string cp = ToCpText(utf8);
  if (cp.empty()) cp = "(no header fields)\r\n";
  return Item{false, "Headers", TruncateText(std::move(cp), "(header block truncated)\r\n"), nullptr, 0};
}

std::string CountLine(uint64_t n) { return std::to_string(ItemSizeCount(n)) + "\r\n"; }

// Bytes of hex data (/FILES/HEX): two upper-case digits a byte, 76 digits a line.
constexpr size_t kHexBytesPerLine = 38;
uint64_t HexSize(uint64_t raw) {
  const uint64_t lines = (raw + kHexBytesPerLine - 1) / kHexBytesPerLine;
  return raw * 2 + lines * 2;
}

class HexWriter {
 public:
  explicit HexWriter(OutputSink* out) : out_(out) {}
  Status Add(std::string_view data) {
    static const char kDigits[] = "0123456789ABCDEF";
    for (unsigned char c : data) {
      buf_.push_back(kDigits[c >> 4]);
      buf_.push_back(kDigits[c & 15]);
      if (++col_ == kHexBytesPerLine) { buf_ += "\r\n"; col_ = 0; }
      if (buf_.size() >= 60000) { CCMAIL_RETURN_IF_ERROR(out_->Write(buf_.data(), buf_.size())); buf_.clear(); }
    }
    return Status::Ok();
  }
  Status Finish() {
    if (col_ != 0) buf_ += "\r\n";
    col_ = 0;
    Status s = out_->Write(buf_.data(), buf_.size());
    buf_.clear();
    return s;
  }
 private:
  OutputSink* out_;
  std::string buf_;
  size_t col_ = 0;
};

struct Counted {
  OutputSink* out;
  uint64_t n = 0;
  Status Write(std::string_view s) {
    n += s.size();
    return out->Write(s.data(), s.size());
  }
};


// What every copy of a message shares: its items, measured, and the header lines that do
// not depend on the recipients.
struct Layout {
  std::vector<Item> items;
  std::vector<std::string> notices;
  std::vector<std::string> keyword_lines;  // "Text item: <title>\r\n" per item
  uint64_t contents_len = 0;               // bytes after "Contents:" (and its count line)
  std::string fixed_head;                  // From + Date
  std::string subject_line;
  std::unordered_set<std::string> hdr_to, hdr_cc;  // for the recipients' roles
};

// The parsed message and what it is parsed from. Members are destroyed in reverse order:
// the borrowed bytes outlive the stream, the parser and the message.
struct Parsed {
  std::optional<BorrowedBytes> borrowed;
  std::unique_ptr<GMimeStream, GObjectUnref> stream;
  std::unique_ptr<GMimeParser, GObjectUnref> parser;
  std::unique_ptr<GMimeMessage, GObjectUnref> message;
  size_t nuls_replaced = 0;  // NULs in structure lines shown as '?'
};

Status Unconvertible(const std::string& who, const std::string& why) {
  return Status::InvalidArgument(who + ": unconvertible: " + why);
}

// The caller's bytes (ConvertInput::data), parsed in place unless a NUL in a structure line
// needs a patched copy.
void StreamFromBytes(const ConvertInput& in, Parsed* p) {
  std::string patched;
  if (std::memchr(in.data, '\0', static_cast<size_t>(in.length)) != nullptr) {
    patched.assign(in.data, static_cast<size_t>(in.length));
    p->nuls_replaced = ReplaceNulsInStructure(&patched);
  }
  if (p->nuls_replaced > 0) {
    p->stream.reset(g_mime_stream_mem_new_with_buffer(patched.data(), patched.size()));  // copies
  } else if (in.length <= G_MAXUINT) {
    // The caller already holds the bytes (the exporter read them to check the spool CRC):
    // parse them in place instead of reading the file again or copying them.
    p->borrowed.emplace(in.data, static_cast<size_t>(in.length));
    p->stream.reset(p->borrowed->NewStream());
  } else {
    p->stream.reset(g_mime_stream_mem_new_with_buffer(in.data, static_cast<size_t>(in.length)));  // copies
  }
}

// [offset, offset+length) of the caller's fd, through an open file description of our own.
Status StreamFromFd(const ConvertInput& in, const std::string& who, Parsed* p) {
  // The input must really hold `length` bytes; a short file is a spool problem, not the message's.
  struct stat st;
  if (fstat(in.fd, &st) != 0) return Status::FromErrno(who + ": fstat message", errno);
  if (!S_ISREG(st.st_mode))
    return Status::FromErrno(who + ": message input is not a regular file (the converter seeks in it)", EINVAL);
  if (static_cast<uint64_t>(st.st_size) < static_cast<uint64_t>(in.offset) + in.length)
    return Status::FromErrno(who + ": message file shorter than offset+length", EIO);
  // Our own open file description, so the caller's file position is not moved.
  int fd2 = ::open(("/proc/self/fd/" + std::to_string(in.fd)).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd2 < 0) fd2 = ::fcntl(in.fd, F_DUPFD_CLOEXEC, 0);  // no /proc: share the position instead
  if (fd2 < 0) return Status::FromErrno(who + ": reopen message", errno);
  // A NUL in a structure line: parse a patched copy in memory (see ReplaceNulsInStructure).
  std::string patched;
  Status scan = ScanForNul(fd2, in.offset, in.length, &patched);
  if (!scan.ok()) { ::close(fd2); return scan.WithContext(who); }
  if (!patched.empty()) p->nuls_replaced = ReplaceNulsInStructure(&patched);
  if (p->nuls_replaced > 0) {
    ::close(fd2);
    p->stream.reset(g_mime_stream_mem_new_with_buffer(patched.data(), patched.size()));  // copies
  } else {
    p->stream.reset(g_mime_stream_fs_new_with_bounds(fd2, in.offset, static_cast<gint64>(in.offset + in.length)));
  }
  return Status::Ok();
}

Status ParseMessage(const ConvertInput& in, const std::string& who, Parsed* p) {
  EnsureGMimeInitialized();
  if (in.data != nullptr) StreamFromBytes(in, p);
  else CCMAIL_RETURN_IF_ERROR(StreamFromFd(in, who, p));
  p->parser.reset(g_mime_parser_new_with_stream(p->stream.get()));
  g_mime_parser_set_persist_stream(p->parser.get(), TRUE);
  g_mime_parser_set_format(p->parser.get(), GMIME_FORMAT_MESSAGE);
  p->message.reset(g_mime_parser_construct_message(p->parser.get(), nullptr));
  if (!p->message) return Unconvertible(who, "not an RFC 5322 message (GMime could not parse it)");
  return Status::Ok();
}

// From, Date, Subject and the addresses visible in To/Cc.
void ReadHead(GMimeMessage* message, const ConvertInput& in, const FormatSettings& s, Layout* l) {
  // Roles: To/Cc when the envelope recipient is visible there, else Bcc.
  CollectAddresses(g_mime_message_get_addresses(message, GMIME_ADDRESS_TYPE_TO), &l->hdr_to);
  CollectAddresses(g_mime_message_get_addresses(message, GMIME_ADDRESS_TYPE_CC), &l->hdr_cc);
  // Date: the message's own date when sane, else the receive time.
  std::optional<time_t> header_date;
  if (GDateTime* d = g_mime_message_get_date(message)) header_date = static_cast<time_t>(g_date_time_to_unix(d));
  const time_t when = ChooseMessageDate(header_date, in.received, s);
  const std::string subj = DecodedHeader(GMIME_OBJECT(message), "Subject");
  // The author, not the envelope sender (list bounces, <>): the envelope stays for bounces.
  const std::string sender_addr = ChooseSenderAddress(FirstMailbox(g_mime_message_get_from(message)),
                                                      FirstMailbox(g_mime_message_get_sender(message)),
                                                      in.envelope_sender, s);
  l->fixed_head = "From: " + FormatSender(sender_addr, s) + "\r\n" + "Date: " + FormatCcDate(when, s) + "\r\n";
  l->subject_line = "Subject: " + CleanSubject(subj, s) + "\r\n";
}

uint64_t ItemDataSize(const Item& it, bool hex) {
  return it.is_file ? (hex ? HexSize(it.raw_size) : it.raw_size) : it.text.size();
}

// Plans the items (once, whatever the number of targets) and measures them.
Status PlanItems(const Parsed& p, const FormatSettings& s, const std::string& who, Layout* l) {
  Planner planner(s);
  if (p.nuls_replaced > 0)
    planner.AddNotice(std::to_string(p.nuls_replaced) + " NUL byte(s) in header or boundary lines are shown as ?");
  Status ps = planner.Plan(p.message.get());
  if (!ps.ok()) return ps.WithContext(who);
  l->items = planner.Finish(p.message.get(), &l->notices);
  if (!planner.status().ok()) return planner.status().WithContext(who);
  for (Item& it : l->items) {
    if (!it.is_file || it.part == nullptr) continue;
    uint64_t n = 0;
    Status cs = ForEachDecodedChunk(it.part, [&n](std::string_view c) { n += c.size(); return Status::Ok(); });
    if (!cs.ok()) return cs.WithContext(who);
    it.raw_size = n;
  }
  const bool hex = s.files == FileData::kHex;
  for (const Item& it : l->items) {
    std::string kw = std::string(it.is_file ? "File item: " : "Text item: ") + it.title;
    while (!kw.empty() && kw.back() == ' ') kw.pop_back();
    l->keyword_lines.push_back(kw + "\r\n");
    const uint64_t data = ItemDataSize(it, hex);
    l->contents_len += l->keyword_lines.back().size() + (s.itemsize ? CountLine(data).size() : 0) + data +
                       ((it.is_file && !hex) ? RawFileTerminator(s).size() : 0);
  }
  return Status::Ok();
}

// One copy's recipient lines (pointing into the target's lines).
using Copy = std::vector<const std::string*>;

// The recipient lines of one target (To, then Cc, then Bcc), split so that every copy's
// header block stays under header_limit.
Status SplitCopies(const ConvertTarget& target, const Layout& l, const FormatSettings& s, const std::string& who,
                   std::vector<std::string>* rcpt_lines, std::vector<Copy>* copies) {
  std::vector<std::string> lines_to, lines_cc, lines_bcc;
  std::unordered_set<std::string> seen_lines;  // one line per cc:Mail user: IMPORT delivers once per line
  for (const ConvertRecipient& r : target.recipients) {
    if (r.ccmail.name.empty()) return Unconvertible(who, "recipient " + r.smtp_address + " has no cc:Mail name");
    std::string a = BareAddress(r.smtp_address);
    std::string line = FormatRecipient(r.ccmail, s);
    if (!seen_lines.insert(ToLowerAscii(line)).second) continue;
    if (l.hdr_to.count(a)) lines_to.push_back("To: " + line + "\r\n");
    else if (l.hdr_cc.count(a)) lines_cc.push_back("Cc: " + line + "\r\n");
    else lines_bcc.push_back("Bcc: " + line + "\r\n");
  }
  for (auto* v : {&lines_to, &lines_cc, &lines_bcc}) rcpt_lines->insert(rcpt_lines->end(), v->begin(), v->end());
  const uint64_t fixed = l.fixed_head.size() + l.subject_line.size();
  copies->resize(1);
  uint64_t used = fixed;  // From, Date, the recipient lines so far, Subject
  for (const std::string& line : *rcpt_lines) {
    if (!HeaderBlockFits(HeaderBlockBytes(fixed + line.size(), l.contents_len, s), s))
      return Unconvertible(who, "recipient line \"" + line.substr(0, line.size() - 2) +
                                    "\" alone makes the header block exceed header_limit " +
                                    std::to_string(s.header_limit));
    if (!HeaderBlockFits(HeaderBlockBytes(used + line.size(), l.contents_len, s), s)) {
      copies->emplace_back();  // the next copy of the message takes the rest
      used = fixed;
    }
    copies->back().push_back(&line);
    used += line.size();
  }
  return Status::Ok();
}

// A file item's data: decoded (as hex with /FILES/HEX) or the UNNAMED.TXT text.
Status WriteFileData(const Item& it, const FormatSettings& s, OutputSink* out, Counted* w) {
  const bool hex = s.files == FileData::kHex;
  uint64_t produced = 0;
  HexWriter hw(out);
  auto sinkfn = [&](std::string_view c) -> Status {
    produced += c.size();
    if (produced > it.raw_size) return Status::FromErrno("message content changed while converting", EIO);
    if (hex) return hw.Add(c);
    return w->Write(c);
  };
  Status fs = it.part        ? ForEachDecodedChunk(it.part, sinkfn)
              : it.text_part ? StreamPartText(it.text_part, it.text_charset, s.codepage, sinkfn)
                             : sinkfn(it.text);
  if (fs.ok() && hex) fs = hw.Finish();
  if (!fs.ok()) return fs;
  if (produced != it.raw_size) return Status::FromErrno("message content changed while converting", EIO);
  if (hex) {
    w->n += HexSize(it.raw_size);
    return Status::Ok();
  }
  return w->Write(RawFileTerminator(s));
}

// One copy of the message: Message:, its header block, Contents:, every item.
Status WriteCopy(const Copy& copy, const Layout& l, const FormatSettings& s, const std::string& who, OutputSink* out,
                 uint64_t* written) {
  Counted w{out};
  std::string head = l.fixed_head;
  for (const std::string* line : copy) head += *line;
  head += l.subject_line;
  const std::string contents_count = CountLine(l.contents_len);
  const uint64_t message_len =
      head.size() + std::strlen("Contents:\r\n") + (s.itemsize ? contents_count.size() : 0) + l.contents_len;
  std::string prefix = "Message:\r\n";
  if (s.itemsize) prefix += CountLine(message_len);
  prefix += head;
  prefix += "Contents:\r\n";
  if (s.itemsize) prefix += contents_count;
  CCMAIL_RETURN_IF_ERROR(w.Write(prefix).WithContext(who));
  const bool hex = s.files == FileData::kHex;
  for (size_t i = 0; i < l.items.size(); ++i) {
    const Item& it = l.items[i];
    std::string kw = l.keyword_lines[i];
    if (s.itemsize) kw += CountLine(ItemDataSize(it, hex));
    CCMAIL_RETURN_IF_ERROR(w.Write(kw).WithContext(who));
    if (it.is_file) CCMAIL_RETURN_IF_ERROR(WriteFileData(it, s, out, &w).WithContext(who));
    else CCMAIL_RETURN_IF_ERROR(w.Write(it.text).WithContext(who));
  }
  *written = w.n;
  return Status::Ok();
}

}  // namespace

Converter::Converter(FormatSettings settings) : settings_(std::move(settings)) {}

Status Converter::Convert(const ConvertInput& in, OutputSink* out, ConvertResult* result) const {
  std::vector<ConvertTarget> one(1);
  one[0].recipients = in.recipients;
  one[0].out = out;
  one[0].result = result;
  return ConvertForEach(in, one);
}

Status Converter::ConvertForEach(const ConvertInput& in, const std::vector<ConvertTarget>& targets) const {
  const FormatSettings& s = settings_;
  for (const ConvertTarget& t : targets)
    if (t.result) *t.result = ConvertResult{};
  const std::string who = in.log_id.empty() ? std::string("message") : in.log_id;
  if (targets.empty()) return Unconvertible(who, "no cc:Mail recipients given");
  for (const ConvertTarget& t : targets)
    if (t.recipients.empty()) return Unconvertible(who, "no cc:Mail recipients given");
  if (in.length == 0) return Unconvertible(who, "empty message");

  Parsed parsed;
  CCMAIL_RETURN_IF_ERROR(ParseMessage(in, who, &parsed));
  Layout layout;
  ReadHead(parsed.message.get(), in, s, &layout);
  CCMAIL_RETURN_IF_ERROR(PlanItems(parsed, s, who, &layout));
  // Every target is checked before the first byte is written, so an unconvertible recipient
  // leaves every sink untouched.
  std::vector<std::vector<std::string>> target_lines(targets.size());
  std::vector<std::vector<Copy>> target_copies(targets.size());
  for (size_t ti = 0; ti < targets.size(); ++ti)
    CCMAIL_RETURN_IF_ERROR(SplitCopies(targets[ti], layout, s, who, &target_lines[ti], &target_copies[ti]));

  for (size_t ti = 0; ti < targets.size(); ++ti) {
    ConvertResult local;
    ConvertResult& res = targets[ti].result ? *targets[ti].result : local;
    res.notices = layout.notices;
    for (const Copy& copy : target_copies[ti]) {
      uint64_t written = 0;
      CCMAIL_RETURN_IF_ERROR(WriteCopy(copy, layout, s, who, targets[ti].out, &written));
      res.bytes_written += written;
      res.messages_written += 1;
    }
    res.items_written = static_cast<int>(layout.items.size());
  }
  return Status::Ok();
}

}  // namespace ccmail::format
