// reader.cpp - parse and validate import files (see reader.h).
#include "ccmail/format/reader.h"

#include <cctype>
#include <set>

#include "ccmail/common/ascii.h"
#include "ccmail/format/rules.h"

namespace ccmail::format {
namespace {

bool IsDigits(std::string_view s) {
  if (s.empty() || s.size() > 12) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

class Reader {
 public:
  Reader(std::string_view f, const FormatSettings& s, const ReadOptions& o) : f_(f), s_(s), o_(o) {}

  ReadResult Run() {
    ReadResult r;
    itemsize_ = s_.itemsize;
    if (o_.detect_layout) {
      Line l = PeekLine(0);
      if (l.text == "Message:") itemsize_ = IsDigits(PeekLine(l.next).text);
    }
    r.itemsize = itemsize_;
    if (f_.empty()) Violate(0, "empty file: no Message:");
    if (!f_.empty() && f_.back() == '\x1a') Violate(f_.size() - 1, "file ends with CTRL-Z (0x1A)");
    size_t pos = 0;
    while (pos < f_.size() && violations_.size() < o_.max_violations) {
      Line l = PeekLine(pos);
      if (l.text != "Message:") {
        Violate(pos, "expected \"Message:\", found \"" + Shown(l.text) + "\"");
        size_t next = FindKeywordLine(l.next, {"Message:"});
        if (next == std::string_view::npos) break;
        pos = next;
        continue;
      }
      ImportMessage m;
      pos = ReadMessage(pos, &m);
      r.messages.push_back(std::move(m));
    }
    r.violations = std::move(violations_);
    return r;
  }

 private:
  struct Line {
    std::string_view text;  // without the line end
    size_t next;            // offset after the line end
    bool crlf;              // ended by CRLF (or it is the last line without end)
  };

  Line PeekLine(size_t pos) const {
    if (pos >= f_.size()) return Line{{}, f_.size(), true};
    size_t nl = f_.find('\n', pos);
    if (nl == std::string_view::npos) return Line{f_.substr(pos), f_.size(), false};
    bool cr = nl > pos && f_[nl - 1] == '\r';
    return Line{f_.substr(pos, nl - pos - (cr ? 1 : 0)), nl + 1, cr};
  }

  // Reads a structural line, checking its end and its bytes.
  Line TakeLine(size_t pos) {
    Line l = PeekLine(pos);
    if (!l.crlf) Violate(pos + l.text.size(), "line does not end in CRLF");
    CheckText(l.text, pos, "line");
    return l;
  }

  void CheckText(std::string_view text, size_t base, const char* what) {
    for (size_t i = 0; i < text.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(text[i]);
      if (c == 0) { Violate(base + i, std::string("NUL byte in ") + what); return; }
      if (c == 0x1a) { Violate(base + i, std::string("CTRL-Z (0x1A) in ") + what); return; }
      if (c < 0x20 && c != '\t' && c != '\r' && c != '\n') {
        Violate(base + i, std::string("control character 0x") + "0123456789ABCDEF"[c >> 4] + "0123456789ABCDEF"[c & 15] + " in " + what);
        return;
      }
    }
  }

  void Violate(size_t offset, std::string reason) {
    if (violations_.size() < o_.max_violations) violations_.push_back(Violation{offset, std::move(reason)});
  }

  static std::string Shown(std::string_view s) {
    std::string out;
    for (unsigned char c : s.substr(0, 40)) out.push_back(c < 0x20 || c >= 0x7f ? '?' : static_cast<char>(c));
    if (s.size() > 40) out += "...";
    return out;
  }

  bool IsKeywordLine(std::string_view text) const {
    return text == "Message:" || text == "Contents:" || StartsWith(text, "Text item:") || StartsWith(text, "File item:") ||
           (!itemsize_ && !text.empty() && text[0] != ' ' && text[0] != '\t' && NeedsKeywordProtection(text));
  }

  // Offset of the next line (from pos) that starts with one of prefixes, or npos.
  size_t FindKeywordLine(size_t pos, std::initializer_list<std::string_view> prefixes) const {
    while (pos < f_.size()) {
      Line l = PeekLine(pos);
      for (std::string_view p : prefixes)
        if (StartsWith(l.text, p)) return pos;
      pos = l.next;
    }
    return std::string_view::npos;
  }

  // A count line: decimal digits alone on a line.
  bool TakeCount(size_t* pos, uint64_t* n, const char* of) {
    Line l = TakeLine(*pos);
    if (!IsDigits(l.text)) {
      Violate(*pos, std::string("expected the byte count of ") + of + ", found \"" + Shown(l.text) + "\"");
      return false;
    }
    *n = std::stoull(std::string(l.text));
    *pos = l.next;
    return true;
  }

  size_t ReadMessage(size_t pos, ImportMessage* m) {
    m->offset = pos;
    pos = TakeLine(pos).next;  // "Message:"
    uint64_t msg_count = 0;
    bool have_msg_count = false;
    if (itemsize_) have_msg_count = TakeCount(&pos, &msg_count, "Message:");
    const size_t msg_start = pos;
    if (!ReadHeaderLines(&pos, m)) return pos;
    pos = TakeLine(pos).next;  // Contents:
    uint64_t contents_count = 0;
    bool have_contents_count = false;
    if (itemsize_) have_contents_count = TakeCount(&pos, &contents_count, "Contents:");
    if (!HeaderBlockFits(pos - m->offset, s_))
      Violate(m->offset, "header block of " + std::to_string(pos - m->offset) + " bytes (Message: to the Contents: count) is over header_limit " +
                             std::to_string(s_.header_limit));
    const size_t contents_start = pos;
    if (!ReadItems(&pos, m)) return f_.size();
    if (m->items.empty()) Violate(contents_start, "Contents: of the message at offset " + std::to_string(m->offset) + " has no item");
    if (m->items.size() > s_.max_items)
      Violate(m->offset, "message has " + std::to_string(m->items.size()) + " items, more than max_items " + std::to_string(s_.max_items));
    if (have_contents_count && ItemSizeCount(pos - contents_start) != contents_count)
      Violate(contents_start, "Contents: count " + std::to_string(contents_count) + " but the items take " + std::to_string(pos - contents_start) + " bytes");
    if (have_msg_count && ItemSizeCount(pos - msg_start) != msg_count)
      Violate(msg_start, "Message: count " + std::to_string(msg_count) + " but the message takes " + std::to_string(pos - msg_start) + " bytes");
    return pos;
  }

  // The header lines (From, Date, To*/Cc*/Bcc*, Subject) up to Contents:. False when the
  // message ends first (at the end of the file or at the next Message:); *pos is then where.
  bool ReadHeaderLines(size_t* pos, ImportMessage* m) {
    const size_t head_start = *pos;
    HeaderSeen seen;
    for (;;) {
      if (*pos >= f_.size()) {
        Violate(*pos, "file ends inside the header of the message at offset " + std::to_string(m->offset) + " (no Contents:)");
        return false;
      }
      Line l = PeekLine(*pos);
      if (l.text == "Contents:") break;
      if (l.text == "Message:") {
        Violate(*pos, "message at offset " + std::to_string(m->offset) + " has no Contents: (mandatory, KB234745)");
        return false;
      }
      l = TakeLine(*pos);
      ReadHeaderLine(*pos, l.text, m, &seen);
      *pos = l.next;
    }
    if (!seen.from) Violate(head_start, "message at offset " + std::to_string(m->offset) + " has no From:");
    if (!seen.date) Violate(head_start, "message at offset " + std::to_string(m->offset) + " has no Date:");
    if (!seen.subject) Violate(head_start, "message at offset " + std::to_string(m->offset) + " has no Subject:");
    if (seen.rcpts == 0) Violate(head_start, "message at offset " + std::to_string(m->offset) + " has no To:, Cc: or Bcc: recipient");
    return true;
  }

  struct HeaderSeen {
    int rank_last = 0;  // 1 From, 2 Date, 3 To, 4 Cc, 5 Bcc, 6 Subject
    bool from = false, date = false, subject = false;
    size_t rcpts = 0;
  };

  // One header line at pos: its order, its value's checks, into m.
  void ReadHeaderLine(size_t pos, std::string_view text, ImportMessage* m, HeaderSeen* seen) {
    size_t colon = text.find(':');
    std::string key = colon == std::string_view::npos ? std::string() : std::string(text.substr(0, colon));
    std::string_view value = colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    int rank = key == "From" ? 1 : key == "Date" ? 2 : key == "To" ? 3 : key == "Cc" ? 4 : key == "Bcc" ? 5 : key == "Subject" ? 6 : 0;
    if (rank == 0) {
      Violate(pos, "unknown header line \"" + Shown(text) + "\" (expected From/Date/To/Cc/Bcc/Subject)");
      return;
    }
    if (rank < seen->rank_last || (rank == seen->rank_last && (rank == 1 || rank == 2 || rank == 6)))
      Violate(pos, key + ": out of order or repeated (order: From, Date, To, Cc, Bcc, Subject)");
    seen->rank_last = std::max(seen->rank_last, rank);
    switch (rank) {
      case 1:
        seen->from = true;
        m->from = std::string(value);
        if (!o_.exported && value.find(" at ") == std::string_view::npos) Violate(pos, "From: is not \"address at POSTOFFICE\"");
        if (o_.exported && value.find_first_not_of(' ') == std::string_view::npos) Violate(pos, "From: is empty");
        break;
      case 2:
        seen->date = true;
        m->date = std::string(value);
        if (!ParseCcDate(value, s_)) Violate(pos, "Date: \"" + Shown(value) + "\" is not in the configured date format");
        break;
      case 3: case 4: case 5:
        ++seen->rcpts;
        if (value.empty() || value.find_first_not_of(' ') == std::string_view::npos)
          Violate(pos, key + ": empty address");
        (rank == 3 ? m->to : rank == 4 ? m->cc : m->bcc).push_back(std::string(value));
        break;
      case 6:
        seen->subject = true;
        m->subject = std::string(value);
        if (o_.exported) break;  // the cc:Mail client's limits, not ours
        if (value.size() > s_.subject_max)
          Violate(pos, "Subject: longer than " + std::to_string(s_.subject_max) + " characters");
        if (s_.subject_brackets && value.find_first_of("[]") != std::string_view::npos)
          Violate(pos, "Subject: contains [ or ] (breaks Import 8.3)");
        break;
    }
  }

  // The items after Contents:, up to the next Message: or the end of the file. False when an
  // unexpected line has no item or message after it (the rest of the file is skipped).
  bool ReadItems(size_t* pos, ImportMessage* m) {
    std::set<std::string> names;
    while (*pos < f_.size()) {
      Line l = PeekLine(*pos);
      if (l.text == "Message:") break;
      const bool text = StartsWith(l.text, "Text item:");
      const bool file = StartsWith(l.text, "File item:");
      if (!text && !file) {
        Violate(*pos, "expected \"Text item:\", \"File item:\" or \"Message:\", found \"" + Shown(l.text) + "\"");
        size_t next = FindKeywordLine(l.next, {"Message:", "Text item:", "File item:"});
        if (next == std::string_view::npos) return false;
        *pos = next;
        continue;
      }
      ImportItem item;
      item.kind = file ? ImportItem::Kind::kFile : ImportItem::Kind::kText;
      item.offset = *pos;
      l = TakeLine(*pos);
      std::string_view title = l.text.substr(10);
      if (!title.empty() && title[0] == ' ') title.remove_prefix(1);
      item.title = std::string(title);
      *pos = l.next;
      if (file) CheckFileName(item.title, item.offset, &names);
      *pos = itemsize_ ? ReadCountedItem(*pos, &item) : ReadDelimitedItem(*pos, &item);
      m->items.push_back(std::move(item));
    }
    return true;
  }

  void CheckFileName(const std::string& name, size_t off, std::set<std::string>* names) {
    if (name.empty()) { Violate(off, "File item: without a file name"); return; }
    if (o_.exported) return;  // "ABC.WK4 5/6/97 3:10PM": EXPORT's title, not our 8.3 name
    if (name.find_first_of("/\\:") != std::string::npos || name == "." || name == ".." || name.find("..") != std::string::npos)
      Violate(off, "file name \"" + Shown(name) + "\" contains a path");
    if (IsDosDeviceName(name)) Violate(off, "file name \"" + Shown(name) + "\" is a DOS device name");
    if (!names->insert(ToUpperAscii(name)).second) Violate(off, "file name \"" + Shown(name) + "\" used twice in one message");
    if (!s_.long_filenames) {
      size_t dot = name.find('.');
      std::string_view base = std::string_view(name).substr(0, dot);
      std::string_view ext = dot == std::string::npos ? std::string_view() : std::string_view(name).substr(dot + 1);
      bool ok = !base.empty() && base.size() <= 8 && ext.size() <= 3 && ext.find('.') == std::string_view::npos;
      for (char c : name)
        if (c == ' ' || std::islower(static_cast<unsigned char>(c)) || static_cast<unsigned char>(c) >= 0x80 || static_cast<unsigned char>(c) < 0x20) ok = false;
      if (!ok) Violate(off, "file name \"" + Shown(name) + "\" is not an upper-case 8.3 name");
    }
  }

  void CheckTextData(std::string_view data, size_t base, ImportItem* item) {
    if (data.empty()) Violate(item->offset, "empty text item (KB178122)");
    if (data.size() > s_.text_item_max)
      Violate(item->offset, "text item of " + std::to_string(data.size()) + " bytes exceeds text_item_max " + std::to_string(s_.text_item_max));
    CheckText(data, base, "text item");
    // Lines: CRLF only, no bare CR or LF, data ends with CRLF.
    for (size_t i = 0; i < data.size(); ++i) {
      if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) { Violate(base + i, "bare LF in text item"); break; }
      if (data[i] == '\r' && (i + 1 >= data.size() || data[i + 1] != '\n')) { Violate(base + i, "bare CR in text item"); break; }
    }
    if (!data.empty() && (data.size() < 2 || data.substr(data.size() - 2) != "\r\n"))
      Violate(base + data.size(), "text item does not end with CRLF");
  }

  // Decodes /FILES/HEX lines (two upper-case hex digits a byte).
  void DecodeHex(std::string_view data, size_t base, ImportItem* item) {
    std::string out;
    size_t i = 0;
    while (i < data.size()) {
      size_t nl = data.find("\r\n", i);
      std::string_view line = data.substr(i, nl == std::string_view::npos ? std::string_view::npos : nl - i);
      if (nl == std::string_view::npos) { Violate(base + i, "hex data line does not end in CRLF"); }
      if (line.size() % 2 != 0 || line.size() > 76) { Violate(base + i, "hex data line of " + std::to_string(line.size()) + " digits"); return; }
      for (size_t k = 0; k < line.size(); k += 2) {
        const bool lower_ok = o_.exported;
        auto hv = [lower_ok](char c) {
          return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : lower_ok && c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        };
        int a = hv(line[k]), b = hv(line[k + 1]);
        if (a < 0 || b < 0) { Violate(base + i + k, "not upper-case hex digits in file data"); return; }
        out.push_back(static_cast<char>(a * 16 + b));
      }
      i = nl == std::string_view::npos ? data.size() : nl + 2;
    }
    item->size = out.size();
    if (o_.keep_data) item->data = std::move(out);
  }

  size_t ReadCountedItem(size_t pos, ImportItem* item) {
    uint64_t n = 0;
    if (!TakeCount(&pos, &n, item->kind == ImportItem::Kind::kFile ? "File item:" : "Text item:")) {
      size_t next = FindKeywordLine(pos, {"Message:", "Text item:", "File item:"});
      return next == std::string_view::npos ? f_.size() : next;
    }
    if (n > f_.size() - pos) {
      Violate(pos, "item count " + std::to_string(n) + " runs past the end of the file");
      return f_.size();
    }
    std::string_view data = f_.substr(pos, n);
    size_t end = pos + n;
    const bool raw_file = item->kind == ImportItem::Kind::kFile && s_.files == FileData::kRaw;
    if (item->kind == ImportItem::Kind::kText) {
      CheckTextData(data, pos, item);
      item->size = data.size();
      if (o_.keep_data) item->data = std::string(data);
    } else if (raw_file) {
      item->size = data.size();
      if (o_.keep_data) item->data = std::string(data);
      const std::string_view term = RawFileTerminator(s_);
      if (f_.substr(end, term.size()) != term) Violate(end, "raw file data is not followed by CRLF (raw_file_crlf = yes)");
      else end += term.size();
    } else {
      DecodeHex(data, pos, item);
    }
    if (end < f_.size() && !IsKeywordLine(PeekLine(end).text)) {
      Violate(end, "item count " + std::to_string(n) + " does not end at a keyword line (found \"" + Shown(PeekLine(end).text) + "\")");
      size_t next = FindKeywordLine(end, {"Message:", "Text item:", "File item:"});
      return next == std::string_view::npos ? f_.size() : next;
    }
    return end;
  }

  size_t ReadDelimitedItem(size_t pos, ImportItem* item) {
    const size_t start = pos;
    std::string data;
    while (pos < f_.size()) {
      Line l = PeekLine(pos);
      if (IsKeywordLine(l.text)) break;
      std::string_view text = l.text;
      // A protected line: one added space in front of a keyword-looking line.
      if (!text.empty() && text[0] == kKeywordProtection && NeedsKeywordProtection(text.substr(1))) text.remove_prefix(1);
      if (!l.crlf) Violate(pos + l.text.size(), "line does not end in CRLF");
      if (o_.keep_data || item->kind == ImportItem::Kind::kFile) { data.append(text); data.append("\r\n"); }
      pos = l.next;
    }
    std::string_view raw = f_.substr(start, pos - start);
    if (item->kind == ImportItem::Kind::kText) {
      CheckTextData(raw, start, item);
      item->size = o_.keep_data ? data.size() : raw.size();
      if (o_.keep_data) item->data = std::move(data);
    } else {
      DecodeHex(raw, start, item);
    }
    return pos;
  }

  std::string_view f_;
  const FormatSettings& s_;
  const ReadOptions& o_;
  bool itemsize_ = true;
  std::vector<Violation> violations_;
};

}  // namespace

ReadResult ReadImportFile(std::string_view file, const FormatSettings& settings, const ReadOptions& options) {
  Reader r(file, settings, options);
  return r.Run();
}

}  // namespace ccmail::format
