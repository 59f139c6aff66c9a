# Private sshds on loopback for the SSH benchmarks (scripts/bench-ssh, scripts/bench
# --peers), started the way the sshd test fixture starts them: keys in a temporary
# directory, a free port, node n listening on 127.0.0.n, stopped by PID. Sourced.
#
#   sshd_start DIR NODES   # sets SSHD_PORT; writes DIR/user_key, DIR/known_hosts
#                          # (SSHD_PREFIX=DIR: DIR/usr/sbin/sshd, an unpacked OpenSSH)
#   sshd_stop              # stops every server started (and the sessions they serve)

sshd_pids=()
SSHD_PORT=

sshd_port_free() { # PORT [ADDRESS]
    ! (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

sshd_start() {
    local dir=$1 nodes=$2
    if [ "$nodes" -lt 1 ] || [ "$nodes" -gt 254 ]; then
        echo "sshd: NODES must be 1..254" >&2
        return 2
    fi
    ssh-keygen -q -t ed25519 -N '' -C dtk-bench -f "$dir/host_key"
    ssh-keygen -q -t ed25519 -N '' -C dtk-bench -f "$dir/user_key"
    cp "$dir/user_key.pub" "$dir/authorized_keys"
    if [ "$(id -u)" -eq 0 ]; then
        mkdir -p /run/sshd
    fi
    local candidate
    SSHD_PORT=
    for _ in $(seq 20); do
        candidate=$((20000 + RANDOM % 40000))
        if sshd_port_free "$candidate"; then
            SSHD_PORT=$candidate
            break
        fi
    done
    [ -n "$SSHD_PORT" ] || { echo "sshd: no free port found" >&2; return 1; }
    # sshd listens on at most 16 sockets: one server per 16 nodes, one port and key.
    local servers=$(((nodes + 15) / 16)) i first last n
    for i in $(seq "$servers"); do
        first=$(((i - 1) * 16 + 1))
        last=$((i * 16 < nodes ? i * 16 : nodes))
        {
            echo "Port $SSHD_PORT"
            for n in $(seq "$first" "$last"); do echo "ListenAddress 127.0.0.$n"; done
            cat <<CONF
HostKey $dir/host_key
PidFile $dir/sshd-$i.pid
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
PrintMotd no
MaxStartups 1000
MaxSessions 100
LogLevel INFO
# Bash sources ~/.bashrc for commands run by sshd unless SHLVL shows a nested shell; a heavy
# .bashrc (pyenv init) would then dominate every side and hide the transport's cost.
SetEnv SHLVL=5
CONF
            # An unpacked OpenSSH 9.8 or later runs its helpers from where it was unpacked.
            if [ -n "${SSHD_PREFIX:-}" ] && [ -x "$SSHD_PREFIX/usr/lib/openssh/sshd-session" ]; then
                echo "SshdSessionPath $SSHD_PREFIX/usr/lib/openssh/sshd-session"
            fi
            if [ -n "${SSHD_PREFIX:-}" ] && [ -x "$SSHD_PREFIX/usr/lib/openssh/sshd-auth" ]; then
                echo "SshdAuthPath $SSHD_PREFIX/usr/lib/openssh/sshd-auth"
            fi
        } >"$dir/sshd_config-$i"
        "${SSHD_PREFIX:-}/usr/sbin/sshd" -D -e -f "$dir/sshd_config-$i" 2>"$dir/sshd-$i.log" &
        sshd_pids+=("$!")
        for _ in $(seq 200); do
            sshd_port_free "$SSHD_PORT" 127.0.0."$last" || break
            sleep 0.05
        done
        if sshd_port_free "$SSHD_PORT" 127.0.0."$last"; then
            echo "sshd: did not start:" >&2
            cat "$dir/sshd-$i.log" >&2
            return 1
        fi
    done
    local host_key
    host_key=$(cut -d' ' -f1,2 "$dir/host_key.pub")
    for n in $(seq "$nodes"); do echo "[127.0.0.$n]:$SSHD_PORT $host_key"; done >"$dir/known_hosts"
}

sshd_stop() {
    local pid
    for pid in "${sshd_pids[@]}"; do
        # The listener, and every process serving a connection (its children).
        if command -v pkill >/dev/null; then pkill -KILL -P "$pid" 2>/dev/null || true; fi
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    sshd_pids=()
}
