# Installs the tools the tests need. Sourced by scripts/test; each function is idempotent
# and quiet when there is nothing to do.

# The moto release the AWS tests run against. Bump it deliberately: moto's AMI ids and
# some responses change between releases (the tests look images up by name, not by id).
DTK_MOTO_VERSION=5.2.5

# ensure_moto TARGET_DIR
# Makes TARGET_DIR/moto-venv with `moto[server]` at DTK_MOTO_VERSION, unless it is there.
ensure_moto() {
    local target_dir=$1
    local venv=$target_dir/moto-venv
    local stamp=$venv/.dtk-moto-$DTK_MOTO_VERSION
    if [ -x "$venv/bin/moto_server" ] && [ -f "$stamp" ]; then
        return 0
    fi
    local python=${DTK_PYTHON:-python3}
    if ! command -v "$python" >/dev/null 2>&1; then
        echo "deps: $python not found; the AWS tests need Python 3 to run moto_server" >&2
        return 1
    fi
    echo "deps: installing moto[server]==$DTK_MOTO_VERSION into $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "moto[server]==$DTK_MOTO_VERSION" >&2
    "$venv/bin/moto_server" --help >/dev/null
    touch "$stamp"
}

# ensure_openssh_backports TARGET_DIR
# Unpacks OpenSSH's client and server from Debian 12's bookworm-backports (10.0 today) into
# TARGET_DIR/openssh-bpo, unless they are there, for `SSH_OPENSSH=backports scripts/bench
# --peers`: OpenSSH 10's default key exchange, mlkem768x25519-sha256, is post-quantum like
# 9.2's sntrup761x25519-sha512 and costs a client a tenth of its CPU. Nothing is installed
# system-wide: apt reads the backports index into its lists (beside the others) and the
# packages are unpacked, not installed. Debian 12 only.
ensure_openssh_backports() {
    local dir=$1/openssh-bpo
    local stamp=$dir/.dtk-openssh-bookworm-backports
    if [ -x "$dir/usr/bin/ssh" ] && [ -x "$dir/usr/sbin/sshd" ] && [ -f "$stamp" ]; then
        return 0
    fi
    if ! grep -qs '^VERSION_CODENAME=bookworm$' /etc/os-release; then
        echo "deps: OpenSSH from bookworm-backports is for Debian 12 (bookworm) only" >&2
        return 1
    fi
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then
        sudo=sudo
    fi
    local tmp
    tmp=$(mktemp -d)
    echo "deb http://deb.debian.org/debian bookworm-backports main" >"$tmp/sources.list"
    local apt=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=-
        -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)
    echo "deps: unpacking OpenSSH from bookworm-backports into $dir" >&2
    if ! $sudo apt-get "${apt[@]}" update -qq >/dev/null ||
        ! (cd "$tmp" && apt-get "${apt[@]}" download -qq openssh-client openssh-server >/dev/null); then
        rm -rf "$tmp"
        echo "deps: could not fetch openssh-client and openssh-server from bookworm-backports" >&2
        return 1
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    local deb
    for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
    rm -rf "$tmp"
    "$dir/usr/bin/ssh" -V 2>/dev/null
    touch "$stamp"
}

# ensure_sshd
# Installs Debian's openssh-server when /usr/sbin/sshd is missing: the SSH transport's tests
# start their own sshd (127.0.0.1, free port, keys in a temp dir) from that binary. The
# package's maintainer scripts would start a system sshd on port 22; a temporary
# policy-rc.d (exit 101: "action forbidden") stops that, and a start that happens anyway
# is harmless to the tests, which never use port 22.
ensure_sshd() {
    if [ -x /usr/sbin/sshd ]; then
        return 0
    fi
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then
        sudo=sudo
    fi
    echo "deps: installing openssh-server (the SSH tests run a private sshd)" >&2
    local policy=/usr/sbin/policy-rc.d policy_made=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 0755 "$policy"
        policy_made=1
    fi
    local rc=0
    {
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends openssh-server >/dev/null ||
            { $sudo apt-get update -qq >/dev/null &&
                $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                    --no-install-recommends openssh-server >/dev/null; }
    } || rc=$?
    if [ -n "$policy_made" ]; then
        $sudo rm -f "$policy"
    fi
    if [ "$rc" -ne 0 ] || [ ! -x /usr/sbin/sshd ]; then
        echo "deps: could not install openssh-server; the SSH tests need /usr/sbin/sshd" >&2
        return 1
    fi
}

# ensure_git_daemon
# The team tests start `git daemon --enable=receive-pack` on a free port. Debian ships it
# with git itself; other distributions split it out (git-daemon).
ensure_git_daemon() {
    if git daemon --help >/dev/null 2>&1 || [ -x "$(git --exec-path)/git-daemon" ]; then
        return 0
    fi
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then
        sudo=sudo
    fi
    echo "deps: installing git's daemon (the team tests run a private git server)" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        git >/dev/null 2>&1 ||
        $sudo dnf install -y -q git-daemon >/dev/null 2>&1 || true
    if ! [ -x "$(git --exec-path)/git-daemon" ]; then
        echo "deps: could not install git's daemon; the team tests need \`git daemon\`" >&2
        return 1
    fi
}

# ensure_chromium
# Installs Debian's chromium when /usr/bin/chromium is missing: the web view's tests
# (`dtk ui`) load its pages in headless Chromium, started by the test itself on a private
# profile directory and driven over the DevTools protocol on 127.0.0.1. Only the browser:
# no recommended packages, no driver.
ensure_chromium() {
    if [ -x /usr/bin/chromium ]; then
        return 0
    fi
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then
        sudo=sudo
    fi
    echo "deps: installing chromium (the web view's tests run headless Chromium)" >&2
    local rc=0
    {
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends chromium >/dev/null ||
            { $sudo apt-get update -qq >/dev/null &&
                $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                    --no-install-recommends chromium >/dev/null; }
    } || rc=$?
    if [ "$rc" -ne 0 ] || [ ! -x /usr/bin/chromium ]; then
        echo "deps: could not install chromium; the web view's tests need /usr/bin/chromium" >&2
        return 1
    fi
}

# ensure_test_deps TARGET_DIR
ensure_test_deps() {
    local target_dir=$1
    mkdir -p "$target_dir"
    ensure_moto "$target_dir"
    ensure_sshd
    ensure_git_daemon
    ensure_chromium
}
