-- OpenDKIM's miltertest (a third-party milter client) against the real ccmail-milter.
-- Run by miltertest_test.sh, which starts the daemon on $CCMAIL_SOCK (reject_unknown = yes,
-- message_size_limit = 2k, divert mode).
local sock = os.getenv("CCMAIL_SOCK")

local function start(qid)
  local conn = mt.connect(sock, 20, 0.1)
  if conn == nil then error("mt.connect(" .. sock .. ") failed") end
  -- no mt.conninfo: the filter negotiates SMFIP_NOCONNECT (one MTA round trip), and
  -- miltertest refuses to send negotiated-away events. Headers, end of headers and body
  -- chunks are negotiated as SMFIP_NR_* (no answer; miltertest reports CONTINUE for them):
  -- a 4xx/5xx found there comes at end of message.
  mt.macro(conn, SMFIC_MAIL, "i", qid)
  if mt.mailfrom(conn, "<alice@example.org>") ~= nil then error("mailfrom failed") end
  if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mailfrom reply") end
  return conn
end

local function expect(conn, want, what)
  local got = mt.getreply(conn)
  if got ~= want then error(what .. ": got reply " .. tostring(got) .. ", want " .. tostring(want)) end
end

-- 1. divert: the cc:Mail recipient is removed at end of message, the other is not.
local conn = start("QID1")
mt.rcptto(conn, "<jsmith@corp.example>"); expect(conn, SMFIR_CONTINUE, "rcpt jsmith")
mt.rcptto(conn, "<bob@example.org>"); expect(conn, SMFIR_CONTINUE, "rcpt bob")
mt.header(conn, "From", "alice@example.org"); expect(conn, SMFIR_CONTINUE, "header")
mt.header(conn, "Subject", "miltertest one"); expect(conn, SMFIR_CONTINUE, "header")
mt.eoh(conn); expect(conn, SMFIR_CONTINUE, "eoh")
mt.bodystring(conn, "hello from miltertest\r\n"); expect(conn, SMFIR_CONTINUE, "body")
mt.eom(conn); expect(conn, SMFIR_CONTINUE, "eom")
if not mt.eom_check(conn, MT_RCPTDELETE, "<jsmith@corp.example>") then error("jsmith not deleted") end
if mt.eom_check(conn, MT_RCPTDELETE, "<bob@example.org>") then error("bob deleted") end

-- 2. same connection, next message: no cc:Mail recipient -> ACCEPT at DATA, before any header.
mt.mailfrom(conn, "<alice@example.org>"); expect(conn, SMFIR_CONTINUE, "mailfrom 2")
mt.rcptto(conn, "<bob@example.org>"); expect(conn, SMFIR_CONTINUE, "rcpt 2")
mt.data(conn); expect(conn, SMFIR_ACCEPT, "DATA without cc:Mail recipient")

-- 3. reject_unknown: 550 at RCPT for an unmapped address in a cc:Mail domain.
mt.mailfrom(conn, "<alice@example.org>"); expect(conn, SMFIR_CONTINUE, "mailfrom 3")
mt.rcptto(conn, "<nobody@cc.example>"); expect(conn, SMFIR_REPLYCODE, "unknown cc:Mail user")

-- 4. too big: 552 for the body, answered at end of message; nothing kept.
mt.mailfrom(conn, "<alice@example.org>"); expect(conn, SMFIR_CONTINUE, "mailfrom 4")
mt.rcptto(conn, "<kim@cc.example>"); expect(conn, SMFIR_CONTINUE, "rcpt 4")
mt.header(conn, "Subject", "big"); expect(conn, SMFIR_CONTINUE, "header 4")
mt.eoh(conn); expect(conn, SMFIR_CONTINUE, "eoh 4")
mt.bodystring(conn, string.rep("x", 4096)); expect(conn, SMFIR_CONTINUE, "oversize body (not answered)")
mt.eom(conn); expect(conn, SMFIR_REPLYCODE, "oversize body at end of message")

-- 5. abort (RSET) in the middle, then a good message on the same connection.
mt.mailfrom(conn, "<alice@example.org>"); expect(conn, SMFIR_CONTINUE, "mailfrom 5")
mt.rcptto(conn, "<kim@cc.example>"); expect(conn, SMFIR_CONTINUE, "rcpt 5")
mt.header(conn, "Subject", "aborted"); expect(conn, SMFIR_CONTINUE, "header 5")
mt.abort(conn)
mt.mailfrom(conn, "<alice@example.org>"); expect(conn, SMFIR_CONTINUE, "mailfrom 6")
mt.rcptto(conn, "<kim@cc.example>"); expect(conn, SMFIR_CONTINUE, "rcpt 6")
mt.header(conn, "Subject", "miltertest two"); expect(conn, SMFIR_CONTINUE, "header 6")
mt.eoh(conn); expect(conn, SMFIR_CONTINUE, "eoh 6")
mt.bodystring(conn, "second\r\n"); expect(conn, SMFIR_CONTINUE, "body 6")
mt.eom(conn); expect(conn, SMFIR_CONTINUE, "eom 6")
if not mt.eom_check(conn, MT_RCPTDELETE, "<kim@cc.example>") then error("kim not deleted") end
mt.disconnect(conn)
mt.echo("miltertest_capture: all cases passed")
