dnl ccmail-bridge: ccmail-milter for Sendmail. Not active until included: add
dnl   include(`/etc/mail/m4/ccmail-bridge.m4')dnl
dnl to /etc/mail/sendmail.mc before the MAILER lines, set
dnl   milter_socket = unix:/run/ccmail-milter/milter.sock
dnl in /etc/ccmail-bridge/ccmail-bridge.conf, rebuild sendmail.cf (sendmailconfig)
dnl and restart ccmail-milter and sendmail.
dnl F=T: Sendmail tempfails while the milter is unreachable; without it Sendmail
dnl would pass mail for cc:Mail users uncaptured. Timeouts: sending to the milter
dnl 30 s, reading its reply 30 s, whole message 5 min (as in the project's tests).
dnl The queue id {i} is already in Sendmail's default macros for MAIL; nothing to add.
INPUT_MAIL_FILTER(`ccmail-bridge', `S=unix:/run/ccmail-milter/milter.sock, F=T, T=S:30s;R:30s;E:5m')dnl
