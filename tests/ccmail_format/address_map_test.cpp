#include "ccmail/format/address_map.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "ccmail/config/config.h"

namespace ccmail::format {
namespace {

std::shared_ptr<const AddressMap> MustParse(const std::string& text, AddressMapOptions opt = {}) {
  std::shared_ptr<const AddressMap> m;
  Status s = AddressMap::Parse(text, "map", opt, &m);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return m;
}

TEST(AddressMap, ExactRulesAreCaseInsensitiveAndKeepNameCase) {
  auto m = MustParse("# comment\n\njsmith@corp.example  Smith, John at HUBPO2\n  helpdesk@corp.example\tHelp Desk at Hub \n");
  EXPECT_EQ(m->rule_count(), 2u);
  auto r = m->Resolve("JSmith@Corp.Example");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->name, "Smith, John");
  EXPECT_EQ(r->post_office, "HUBPO2");
  r = m->Resolve(" <helpdesk@corp.example> ");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (CcMailAddress{"Help Desk", "Hub"}));
  EXPECT_FALSE(m->Resolve("nobody@corp.example"));
  EXPECT_FALSE(m->Resolve(""));
  EXPECT_FALSE(m->Resolve("no-at-sign"));
}

TEST(AddressMap, NameSplitsAtTheLastAt) {
  auto m = MustParse("a@x.example  Meet Noon at PO1\nb@x.example Caps AT PO2\n");
  EXPECT_EQ(*m->Resolve("a@x.example"), (CcMailAddress{"Meet Noon", "PO1"}));
  EXPECT_EQ(*m->Resolve("b@x.example"), (CcMailAddress{"Caps", "PO2"}));
  // A name holding " at " would read as two addresses in the import file: refused.
  std::shared_ptr<const AddressMap> bad;
  Status s = AddressMap::Parse("a@x.example  Meet at Noon at PO1\n", "m", {}, &bad);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("m:1: bad cc:Mail name \"Meet at Noon\""), std::string::npos) << s.message();
}

TEST(AddressMap, DefaultPostOfficeForRulesWithoutOne) {
  AddressMapOptions opt;
  opt.default_postoffice = "HUB";
  auto m = MustParse("helpdesk@corp.example Help Desk\n", opt);
  EXPECT_EQ(*m->Resolve("helpdesk@corp.example"), (CcMailAddress{"Help Desk", "HUB"}));
  std::shared_ptr<const AddressMap> bad;
  Status s = AddressMap::Parse("helpdesk@corp.example Help Desk\n", "f", {}, &bad);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("f:1:"), std::string::npos) << s.message();
}

TEST(AddressMap, DomainRules) {
  auto m = MustParse("@branch.example BRANCHPO\n@sales.example Sales Box at HUBPO\n");
  EXPECT_EQ(*m->Resolve("Anna@Branch.Example"), (CcMailAddress{"Anna", "BRANCHPO"}));
  EXPECT_EQ(*m->Resolve("anyone@sales.example"), (CcMailAddress{"Sales Box", "HUBPO"}));
  EXPECT_TRUE(m->IsCcMailDomain("BRANCH.example"));
  EXPECT_FALSE(m->IsCcMailDomain("other.example"));
}

TEST(AddressMap, PmdfFallbacksForCcMailDomains) {
  AddressMapOptions opt;
  opt.ccmail_domains = {"CCMail.Corp.Example"};
  opt.default_postoffice = "HUBPO";
  auto m = MustParse("jsmith@ccmail.corp.example Smith, John at HUBPO2\n", opt);
  EXPECT_EQ(*m->Resolve("jsmith@ccmail.corp.example"), (CcMailAddress{"Smith, John", "HUBPO2"}));
  EXPECT_EQ(*m->Resolve("mgarcia@ccmail.corp.example"), (CcMailAddress{"mgarcia", "HUBPO"}));
  EXPECT_FALSE(m->Resolve("user%REMOTEPO@ccmail.corp.example"));  // '%' routing is off by default
  EXPECT_EQ(*m->Resolve("\"John Smith\"@ccmail.corp.example"), (CcMailAddress{"John Smith", "HUBPO"}));
  EXPECT_FALSE(m->Resolve("x@elsewhere.example"));
  EXPECT_TRUE(m->IsCcMailDomain("ccmail.corp.example"));
  opt.default_postoffice.clear();
  auto m2 = MustParse("", opt);
  EXPECT_FALSE(m2->Resolve("mgarcia@ccmail.corp.example"));  // no default PO: not resolvable
  opt.percent_route_postoffices = {"po"};
  auto m3 = MustParse("", opt);
  EXPECT_EQ(*m3->Resolve("u%Po@ccmail.corp.example"), (CcMailAddress{"u", "PO"}));
}

TEST(AddressMap, PercentRoutingOnlyToConfiguredPostOffices) {
  AddressMapOptions opt;
  opt.ccmail_domains = {"cc.example"};
  opt.default_postoffice = "HUB";
  opt.percent_route_postoffices = {"REMOTEPO", "branch"};
  auto m = MustParse("@branch.example BRANCHPO\n", opt);
  EXPECT_EQ(*m->Resolve("user%remotepo@cc.example"), (CcMailAddress{"user", "REMOTEPO"}));
  EXPECT_EQ(*m->Resolve("user%BRANCH@branch.example"), (CcMailAddress{"user", "BRANCH"}));
  for (const char* hostile : {"x%ZZTOP@cc.example", "x%AUX@cc.example", "x%NUL@branch.example", "x%CON@cc.example",
                              "x%@cc.example", "x%HUB@cc.example"}) {
    Resolution r = m->Lookup(hostile);
    EXPECT_EQ(r.kind, Resolution::Kind::kUnusable) << hostile;
    EXPECT_EQ(r.unusable, Resolution::Unusable::kNoRoute) << hostile;
    EXPECT_FALSE(r.reason.empty());
  }
  EXPECT_EQ(m->Lookup("x%ZZTOP@elsewhere.example").kind, Resolution::Kind::kNotCcMail);
  // A configured '%' post office must itself be exportable.
  std::shared_ptr<const AddressMap> bad;
  opt.percent_route_postoffices = {"AUX"};
  Status s = AddressMap::Parse("", "m", opt, &bad);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("percent_route_postoffices \"AUX\": post office name is a DOS device name"),
            std::string::npos) << s.message();
}

TEST(AddressMap, PostOfficeNameRule) {
  for (const char* ok : {"HUBPO2", "hub", "A", "PO_1-X", "COM10", "CONX", "LPT"}) EXPECT_TRUE(PostOfficeNameUsable(ok)) << ok;
  for (const char* bad : {"", "TOOLONGPO", "HUB PO", "P.O", "A,B", "P\"O", "CON", "prn", "Aux", "NUL", "COM1", "com9",
                          "LPT1", "LPT9", "P\xC3\xA9", "..", "A/B"}) {
    std::string why;
    EXPECT_FALSE(PostOfficeNameUsable(bad, &why)) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
  // Every place a post office comes from uses the rule.
  std::shared_ptr<const AddressMap> m;
  EXPECT_FALSE(AddressMap::Parse("a@x.example A at NUL\n", "m", {}, &m).ok());
  EXPECT_FALSE(AddressMap::Parse("@x.example CON\n", "m", {}, &m).ok());
  EXPECT_FALSE(AddressMap::Parse("@x.example Box at LONGPOSTOFFICE\n", "m", {}, &m).ok());
  AddressMapOptions opt;
  opt.default_postoffice = "AUX";
  Status s = AddressMap::Parse("", "m", opt, &m);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("default_postoffice \"AUX\""), std::string::npos) << s.message();
}

TEST(AddressMap, CcMailNameRule) {
  for (const char* ok : {"Smith, John", "Help Desk", "O'Brien, Pat", "Pat", "Kat Atwood", "x%y"})
    EXPECT_TRUE(CcMailNameUsable(ok, false)) << ok;
  for (const char* bad : {"", " lead", "trail ", "Evil at PO", "Evil AT PO", "a;b", "a\"b", "a<b", "a>b", "a\tb",
                          "a\rb", "a\nb", "a\x1b[0mb", "a\x7f", "Smith,John", "a, b, c", "Smith,  John", ", x", "x, "})
    EXPECT_FALSE(CcMailNameUsable(bad, false)) << bad;
  // A name from an address (chosen by the sender) has no comma at all.
  EXPECT_FALSE(CcMailNameUsable("Boss, Evil", true));
  EXPECT_TRUE(CcMailNameUsable("Evil Boss", true));
}

TEST(AddressMap, QuotedLocalPartThroughADomainRuleCannotForgeAddresses) {
  AddressMapOptions opt;
  opt.ccmail_domains = {"cc.example"};
  opt.default_postoffice = "HUB";
  auto m = MustParse("@branch.example HUBPO2\n", opt);
  for (const char* hostile : {"\"Evil at PO, Boss\"@branch.example", "\"Evil at PO\"@cc.example",
                              "\"a;b\"@branch.example", "\"a,b\"@cc.example", "\"x\\\"y\"@cc.example",
                              "\"<x>\"@cc.example", "\"tab\there\"@cc.example", "\"lf\nx\"@branch.example",
                              "\"\"@cc.example"}) {
    Resolution r = m->Lookup(hostile);
    EXPECT_EQ(r.kind, Resolution::Kind::kUnusable) << hostile;
    EXPECT_EQ(r.unusable, Resolution::Unusable::kBadName) << hostile;
    EXPECT_FALSE(m->Resolve(hostile)) << hostile;
  }
  EXPECT_EQ(*m->Resolve("\"John Smith\"@branch.example"), (CcMailAddress{"John Smith", "HUBPO2"}));
  EXPECT_EQ(m->Lookup("someone@other.example").kind, Resolution::Kind::kNotCcMail);
}

TEST(AddressMap, MalformedLinesNameFileAndLine) {
  struct Case { const char* text; const char* expect; };
  for (const Case& c : {Case{"ok@x.example A at B\nlonely\n", "m.map:2: expected"},
                        Case{"\n\nnot-an-address Name at PO\n", "m.map:3: bad address"},
                        Case{"a@x.example A at B\nA@X.example C at D\n", "m.map:2: duplicate rule for \"a@x.example\" (first at line 1)"},
                        Case{"a@x.example  at PO\n", "m.map:1: empty cc:Mail name"},
                        Case{"a@x.example Name at A,B\n", "m.map:1: bad post office"},
                        Case{"a@x.example Bad; Name at PO\n", "m.map:1: bad cc:Mail name"},
                        Case{"@d.example Box, A, B at PO\n", "m.map:1: bad cc:Mail name"},
                        Case{"@bad domain.example PO\n", "m.map:1"},
                        Case{"a@x.example Na\x01me at PO\n", "m.map:1: control character"},
                        Case{"@d.example two words\n", "m.map:1: a domain rule"}}) {
    std::shared_ptr<const AddressMap> m;
    Status s = AddressMap::Parse(c.text, "m.map", {}, &m);
    ASSERT_FALSE(s.ok()) << c.text;
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << s.message();
  }
}

TEST(AddressMap, LoadFromFileAndMissingFile) {
  char path[] = "/tmp/ccmail-map-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = "jsmith@corp.example Smith, John at HUBPO2\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  std::shared_ptr<const AddressMap> m;
  ASSERT_TRUE(AddressMap::Load(path, {}, &m).ok());
  EXPECT_EQ(m->source(), path);
  EXPECT_TRUE(m->Resolve("jsmith@corp.example"));
  unlink(path);
  Status s = AddressMap::Load(path, {}, &m);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(s.message().find(path), std::string::npos);
}

TEST(AddressMap, LoadFromConfig) {
  char path[] = "/tmp/ccmail-map-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  Config cfg;
  ASSERT_TRUE(Config::Parse(std::string("address_map = ") + path + "\nccmail_domains = cc.example\ndefault_postoffice = HUB\n", "c", &cfg).ok());
  std::shared_ptr<const AddressMap> m;
  ASSERT_TRUE(AddressMap::LoadFromConfig(cfg, &m).ok());
  EXPECT_EQ(*m->Resolve("x@cc.example"), (CcMailAddress{"x", "HUB"}));
  unlink(path);
  EXPECT_FALSE(AddressMap::LoadFromConfig(cfg, &m).ok());  // explicitly configured file is missing
}

TEST(AddressMap, SnapshotSwapIsSafeWhileReadersResolve) {
  std::shared_ptr<const AddressMap> current = MustParse("a@x.example A at PO1\n");
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    while (!stop) {
      std::shared_ptr<const AddressMap> snap = std::atomic_load(&current);
      auto r = snap->Resolve("a@x.example");
      if (!r || (r->post_office != "PO1" && r->post_office != "PO2")) ++bad;
    }
  });
  for (int i = 0; i < 200; ++i) {
    std::atomic_store(&current, MustParse(i % 2 ? "a@x.example A at PO1\n" : "a@x.example A at PO2\n"));
  }
  stop = true;
  reader.join();
  EXPECT_EQ(bad, 0);
}

// The way back: a cc:Mail name and post office -> the SMTP address the map gives them.
TEST(AddressMap, ReverseResolveFindsTheAddressThatMapsBackToTheUser) {
  AddressMapOptions opt{.ccmail_domains = {"ccmail.corp.example", "other.example"}, .default_postoffice = "HUBPO", .percent_route_postoffices = {}};
  auto m = MustParse(
      "jsmith@corp.example      Smith, John at HUBPO2\n"
      "john.smith@corp.example  Smith, John at HUBPO2\n"   // a second address of the same user
      "helpdesk@corp.example    Help Desk\n"               // default_postoffice
      "@branch.example          BRANCHPO\n"
      "@sales.example           Sales Box at HUBPO\n",
      opt);
  // Exact rule, any case of name and post office; the first rule of the user wins.
  EXPECT_EQ(m->ReverseResolve("Smith, John", "HUBPO2"), "jsmith@corp.example");
  EXPECT_EQ(m->ReverseResolve("SMITH, JOHN", "hubpo2"), "jsmith@corp.example");
  EXPECT_EQ(m->ReverseResolve("Help Desk", "HUBPO"), "helpdesk@corp.example");
  EXPECT_EQ(m->ReverseResolve("Help Desk", ""), "helpdesk@corp.example");  // empty: default_postoffice
  // The same name on another post office is another user.
  EXPECT_EQ(m->ReverseResolve("Smith, John", "BRANCHPO"), std::nullopt);
  // "@domain PO": name@domain, only for a name that is a local part.
  EXPECT_EQ(m->ReverseResolve("anna", "BRANCHPO"), "anna@branch.example");
  EXPECT_EQ(m->ReverseResolve("Anna Lee", "BRANCHPO"), std::nullopt);
  EXPECT_EQ(m->ReverseResolve("Lee, Anna", "BRANCHPO"), std::nullopt);
  // PMDF fallback: user at default_postoffice -> user@<first cc:Mail domain>.
  EXPECT_EQ(m->ReverseResolve("mgarcia", "HUBPO"), "mgarcia@ccmail.corp.example");
  EXPECT_EQ(m->ReverseResolve("mgarcia", "ELSEWHERE"), std::nullopt);
  EXPECT_EQ(m->ReverseResolve(".bad.", "HUBPO"), std::nullopt);
  // "@domain Name at PO" is many addresses -> one name: no address on the way back.
  EXPECT_EQ(m->ReverseResolve("Sales Box", "HUBPO"), std::nullopt);
  EXPECT_EQ(m->ReverseResolve("", "HUBPO"), std::nullopt);
}

TEST(AddressMap, ReverseResolveNeverNamesAnAddressTheForwardMapSendsElsewhere) {
  // "Smith, John at HUBPO2" has an exact rule, but an earlier exact rule for another address
  // of the domain rule's post office must not capture a name it does not map to.
  AddressMapOptions opt{.ccmail_domains = {"ccmail.corp.example"}, .default_postoffice = "HUBPO", .percent_route_postoffices = {}};
  auto m = MustParse("jdoe@ccmail.corp.example  Doe, Jane at HUBPO\n", opt);
  // jdoe at HUBPO would be jdoe@ccmail.corp.example by the fallback, but that address is Jane's.
  EXPECT_EQ(m->ReverseResolve("jdoe", "HUBPO"), std::nullopt);
  EXPECT_EQ(m->ReverseResolve("Doe, Jane", "HUBPO"), "jdoe@ccmail.corp.example");
  for (const char* who : {"Doe, Jane", "mgarcia"}) {
    auto address = m->ReverseResolve(who, "HUBPO");
    ASSERT_TRUE(address) << who;
    auto back = m->Resolve(*address);
    ASSERT_TRUE(back) << *address;
    EXPECT_EQ(back->name, who);
  }
}

}  // namespace
}  // namespace ccmail::format
