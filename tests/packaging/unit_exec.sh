# unit_exec.sh - run a systemd service's ExecStart with the unit's settings applied by
# shellcheck shell=bash
# unshare/mount/setpriv, for machines where systemd is not PID 1 (containers, chroots).
# Sourced by deb_install_test.sh.
#
#   unit_exec_command UNIT_FILE OUT_SCRIPT
#     Reads the [Service] section of UNIT_FILE and writes OUT_SCRIPT, a /bin/sh script run
#     as root by `unshare -m --propagation private /bin/sh OUT_SCRIPT`: it sets up the mount
#     namespace (PrivateTmp, ProtectHome, ProtectSystem=strict with ReadWritePaths), then
#     umask, rlimits and exec setpriv (User, Group, the user's groups + SupplementaryGroups,
#     NoNewPrivileges, an empty CapabilityBoundingSet) into ExecStart. Every exec keeps the
#     pid (no --fork), so LISTEN_PID set by a socket supervisor still names the daemon.
#     Prints one line per setting: "applied: ..." or "NOT applied: ... (why)".
#     Returns 1 for a setting the test must not ignore but cannot apply.

unit_service_keys() {  # UNIT_FILE -> "Key=Value" lines of [Service], comments dropped
  awk '/^\[/ { s = ($0 == "[Service]") } s && /^[A-Za-z]+=/' "$1"
}

unit_exec_command() {
  local unit="$1" out="$2" key val
  local user="" group="" supp="" nnp=no umask="" caps="unset" nofile="" exec=""
  local protect_system=no protect_home=no private_tmp=no rw_paths="" not_applied=""
  while IFS= read -r line; do
    key="${line%%=*}"; val="${line#*=}"
    case "$key" in
      User) user="$val" ;;
      Group) group="$val" ;;
      SupplementaryGroups) supp="$supp $val" ;;
      NoNewPrivileges) nnp="$val" ;;
      UMask) umask="$val" ;;
      CapabilityBoundingSet) caps="$val" ;;
      LimitNOFILE) nofile="$val" ;;
      ExecStart) exec="$val" ;;
      ProtectSystem) protect_system="$val" ;;
      ProtectHome) protect_home="$val" ;;
      PrivateTmp) private_tmp="$val" ;;
      ReadWritePaths) rw_paths="$rw_paths $val" ;;
      # Set up by the package (postinst/tmpfiles) on this machine; their modes are checked.
      RuntimeDirectory|RuntimeDirectoryMode|RuntimeDirectoryPreserve) ;;
      # Supervision, not confinement: the test starts, restarts and stops the daemons itself.
      Type|NotifyAccess|ExecReload|Restart|RestartSec|RestartPreventExitStatus|TimeoutStopSec) ;;
      *) not_applied="$not_applied$key=$val
" ;;
    esac
  done < <(unit_service_keys "$unit")
  [ -n "$exec" ] && [ -n "$user" ] || { echo "unit_exec: $unit has no ExecStart or no User" >&2; return 1; }
  [ -n "$group" ] || group="$(id -gn "$user")"
  # systemd: the user's own groups (initgroups) plus SupplementaryGroups.
  local groups
  groups="$( { id -nG "$user" | tr ' ' '\n'; echo "$supp" | tr ' ' '\n'; } | grep -v '^$' | sort -u | paste -sd, -)"
  local report="$out.settings"
  : > "$report"
  {
    echo "#!/bin/sh"
    echo "# generated from $unit by unit_exec.sh"
    echo "set -e"
    if [ "$private_tmp" = yes ]; then
      echo "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp"
      echo "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp"
      echo "applied: PrivateTmp=yes (fresh tmpfs on /tmp and /var/tmp)" >> "$report"
    fi
    if [ "$protect_home" = yes ]; then
      echo "for d in /home /root /run/user; do [ -d \"\$d\" ] && mount -t tmpfs -o ro,mode=0755 tmpfs \"\$d\"; done; true"
      echo "applied: ProtectHome=yes (empty read-only tmpfs on /home, /root, /run/user)" >> "$report"
    fi
    local keep="/tmp /var/tmp" p
    for p in $rw_paths; do
      case "$p" in
        -*) p="${p#-}"; echo "[ -e '$p' ] && mount --bind '$p' '$p'; true" ;;
        *) echo "mount --bind '$p' '$p'" ;;
      esac
      keep="$keep $p"
    done
    [ -n "$rw_paths" ] && echo "applied: ReadWritePaths=$(echo $rw_paths) (bind mounts kept writable)" >> "$report"
    if [ "$protect_system" = strict ]; then
      # Every other mount read-only; /proc, /sys and /dev belong to the Protect*/PrivateDevices
      # settings (not applied). Mount points with escaped characters are skipped.
      echo "keep='$keep'"
      cat <<'EOS'
for mp in $(awk '{ print $5 }' /proc/self/mountinfo | sort -u); do
  case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|*\\*) continue ;; esac
  skip=no
  for k in $keep; do [ "$mp" = "$k" ] && skip=yes; done
  [ $skip = yes ] || mount -o remount,bind,ro "$mp"
done
EOS
      echo "applied: ProtectSystem=strict (every mount but /proc, /sys, /dev and ReadWritePaths remounted read-only)" >> "$report"
    elif [ "$protect_system" != no ]; then
      not_applied="${not_applied}ProtectSystem=$protect_system
"
    fi
    if [ -n "$umask" ]; then echo "umask $umask"; echo "applied: UMask=$umask" >> "$report"; fi
    if [ -n "$nofile" ]; then
      # Raising the hard limit needs CAP_SYS_RESOURCE, which a container's root may lack.
      local hard; hard="$(ulimit -Hn)"
      if [ "$hard" = unlimited ] || [ "$hard" -ge "$nofile" ] || ( ulimit -n "$nofile" ) 2>/dev/null; then
        echo "ulimit -n $nofile"; echo "applied: LimitNOFILE=$nofile" >> "$report"
      else
        echo "ulimit -n $hard"
        not_applied="${not_applied}LimitNOFILE=$nofile (hard limit here: $hard, used instead)
"
      fi
    fi
    local sp="exec setpriv --reuid=$user --regid=$group --groups=$groups"
    echo "applied: User=$user Group=$group groups=$groups (SupplementaryGroups=$(echo $supp))" >> "$report"
    if [ "$nnp" = yes ]; then sp="$sp --no-new-privs"; echo "applied: NoNewPrivileges=yes" >> "$report"; fi
    if [ "$caps" = "" ]; then
      sp="$sp --bounding-set=-all --inh-caps=-all --ambient-caps=-all"
      echo "applied: CapabilityBoundingSet= (empty bounding, inheritable and ambient sets)" >> "$report"
    elif [ "$caps" != unset ]; then
      not_applied="${not_applied}CapabilityBoundingSet=$caps
"
    fi
    echo "$sp -- $exec"
  } > "$out"
  local k
  while IFS= read -r k; do
    case "$k" in
      "") ;;
      *"("*) echo "NOT applied: $k" >> "$report" ;;
      *) echo "NOT applied: $k (needs systemd: seccomp, kernel/device/clock/namespace protections)" >> "$report" ;;
    esac
  done <<< "$not_applied"
  cat "$report"
}
