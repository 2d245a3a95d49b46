-- Sends $SEC_N messages to one cc:Mail user through the real ccmail-milter on $CCMAIL_SOCK
-- with OpenDKIM's miltertest, one connection each, subject "sectest $SEC_TAG <i>".
-- Prints "ACCEPTED <tag>-<i>" when the milter captured it (the cc:Mail recipient is deleted
-- at end of message, divert mode) or "REFUSED <tag>-<i> at <step>" for any other reply.
local sock = os.getenv("CCMAIL_SOCK")
local n = tonumber(os.getenv("SEC_N"))
local tag = os.getenv("SEC_TAG")

for i = 1, n do
  local id = tag .. "-" .. i
  local conn = mt.connect(sock, 50, 0.1)
  if conn == nil then error("mt.connect(" .. sock .. ") failed") end
  local step = nil
  local function send(what, f)
    if step ~= nil then return end
    f()
    if mt.getreply(conn) ~= SMFIR_CONTINUE then step = what end
  end
  send("mail", function() mt.mailfrom(conn, "<alice@example.org>") end)
  send("rcpt", function() mt.rcptto(conn, "<jsmith@corp.example>") end)
  send("header", function() mt.header(conn, "From", "alice@example.org") end)
  send("header", function() mt.header(conn, "Subject", "sectest " .. tag .. " " .. i) end)
  send("eoh", function() mt.eoh(conn) end)
  send("body", function() mt.bodystring(conn, "security suite message " .. id .. "\r\n") end)
  send("eom", function() mt.eom(conn) end)
  if step == nil and mt.eom_check(conn, MT_RCPTDELETE, "<jsmith@corp.example>") then
    print("ACCEPTED " .. id)
  else
    print("REFUSED " .. id .. " at " .. tostring(step or "eom (recipient kept)"))
  end
  mt.disconnect(conn)
end
