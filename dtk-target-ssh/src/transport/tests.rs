//! Unit tests of the pure parts: scripts, command lines, error classification and messages.
//! Snapshots refresh with `UPDATE_EXPECT=1`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use expect_test::{Expect, expect};

use super::classify::{Failure, classify, master_unavailable};
use super::command::{self, parse_jump};
use super::script;
use super::{ExecRequest, HostKeyPolicy, SshError, SshHost};

fn host() -> SshHost {
    SshHost::new("10.0.0.5", "deploy", "/home/me/.dtk/known_hosts")
        .with_port(2222)
        .with_identity_file("/home/me/.dtk/id_ed25519")
}

#[test]
fn quoting_makes_one_literal_word() {
    let check = |input: &str, expected: Expect| expected.assert_eq(&script::quote(input));
    check("plain", expect!["plain"]);
    check("x; touch /tmp/pwned", expect![["'x; touch /tmp/pwned'"]]);
    check("it's", expect![["'it'\\''s'"]]);
    check("$(id) `id` \"$HOME\"", expect![[r#"'$(id) `id` "$HOME"'"#]]);
    check("", expect![["''"]]);
}

#[test]
fn work_directories_are_absolute_words() {
    let check = |input: &str, expected: Expect| expected.assert_eq(&script::workdir_word(input));
    check("~", expect![[r#""$__dtk_h""#]]);
    check(
        "~/.dtk/nodes/svc/web",
        expect![[r#""$__dtk_h"/.dtk/nodes/svc/web"#]],
    );
    check("/srv/a b/~x", expect!["'/srv/a b/~x'"]);
    check("~other/x", expect![[r#""$__dtk_h"/'~other/x'"#]]);
    check("nodes/web", expect![[r#""$__dtk_h"/nodes/web"#]]);
}

#[test]
fn the_run_script_exports_then_runs_each_line_until_one_fails() {
    let req = ExecRequest::new("~/nodes/web")
        .env("PORT", "8080")
        .env("SECRET", "a'b; rm -rf /")
        .line("echo \"port=$PORT\" >> \"$DTK_OUTPUT\"")
        .line("./start --name 'x; y'");
    expect![[r##"
        # dtk action 1-2-3
        __dtk_h=$HOME
        export PORT=8080
        export SECRET='a'\''b; rm -rf /'
        __dtk_d="$__dtk_h"/nodes/web
        { [ -d "$__dtk_d" ] || mkdir -p -- "$__dtk_d"; } && cd -- "$__dtk_d" || {
          printf 'dtk: cannot use the work directory %s\n' "$__dtk_d" >&2
          exit 125
        }
        __dtk_r="$PWD"/.dtk-run-1-2-3
        __dtk_m=dtk-end-M
        exec 8>&1 9>&2
        echo $$ > "$__dtk_r.pid"
        __dtk_end() {
          echo "$1" > "$__dtk_r.done"
          if [ -s "$__dtk_r.stdout" ] || [ -s "$__dtk_r.out" ] || [ -s "$__dtk_r.stderr" ]; then
            [ -s "$__dtk_r.stdout" ] && cat -- "$__dtk_r.stdout" >&8
            printf '\n%s %s\n' "$__dtk_m" "$1" >&8
            [ -s "$__dtk_r.out" ] && cat -- "$__dtk_r.out" >&8
            printf '\n%s err\n' "$__dtk_m" >&8
            [ -s "$__dtk_r.stderr" ] && cat -- "$__dtk_r.stderr" >&8
            printf '\n%s end\n' "$__dtk_m" >&8
          else
            printf '\n%s %s\n\n%s err\n\n%s end\n' "$__dtk_m" "$1" "$__dtk_m" "$__dtk_m" >&8
          fi
          rm -f -- "$__dtk_r.pid" "$__dtk_r.out" "$__dtk_r.stdout" "$__dtk_r.stderr" /old/.dtk-run-0.done
        }
        trap '__dtk_end $?' EXIT
        export DTK_OUTPUT="$__dtk_r.out"
        ( eval 'echo "port=$PORT" >> "$DTK_OUTPUT"' ) </dev/null >>"$__dtk_r.stdout" 2>>"$__dtk_r.stderr" 8>&- 9>&- || exit $?
        ( eval './start --name '\''x; y'\''' ) </dev/null >>"$__dtk_r.stdout" 2>>"$__dtk_r.stderr" 8>&- 9>&- || exit $?
        exit 0
    "##]]
    .assert_eq(&script::run_script(
        &req,
        "1-2-3",
        &script::run_file_stem("1-2-3"),
        "dtk-end-M",
        &[script::tombstone_word("/old", "0")],
        script::Place::Session,
    ));
}

#[test]
fn the_trailer_is_split_from_the_commands_output() {
    let m = "dtk-end-abc";
    let check = |stdout: &str, expected: Expect| {
        expected.assert_debug_eq(&script::split_trailer(stdout.as_bytes(), m).map(|t| {
            (
                String::from_utf8(t.stdout).expect("utf-8"),
                t.status,
                t.outputs,
            )
        }));
    };
    check(
        "hello\n\ndtk-end-abc 0\nurl=http://x\nport=80\n\ndtk-end-abc end\n",
        expect![[r#"
            Some(
                (
                    "hello\n",
                    0,
                    [
                        (
                            "url",
                            "http://x",
                        ),
                        (
                            "port",
                            "80",
                        ),
                    ],
                ),
            )
        "#]],
    );
    // No outputs file; output without a final newline; output after the trailer.
    check(
        "no newline\ndtk-end-abc 3\n\ndtk-end-abc end\nlate\n",
        expect![[r#"
            Some(
                (
                    "no newlinelate\n",
                    3,
                    [],
                ),
            )
        "#]],
    );
    check(
        "\ndtk-end-abc 255\n\ndtk-end-abc end\n",
        expect![[r#"
            Some(
                (
                    "",
                    255,
                    [],
                ),
            )
        "#]],
    );
    // Cut short, or a lookalike marker: no trailer.
    check(
        "out\ndtk-end-abc 0\nurl=x\n",
        expect![[r#"
        None
    "#]],
    );
    check(
        "out\ndtk-end-abd 0\n\ndtk-end-abd end\n",
        expect![[r#"
        None
    "#]],
    );
    check(
        "",
        expect![[r#"
        None
    "#]],
    );
}

#[test]
fn the_collect_and_kill_scripts_touch_only_the_run_files() {
    expect![[r#"
        __dtk_h=$HOME
        cd -- /srv/n1 2>/dev/null || { echo 'dtk-run none unstarted'; exit 0; }
        __dtk_r=.dtk-run-9
        __dtk_m=dtk-end-M
        __dtk_s=none; __dtk_p=unstarted
        [ -s "$__dtk_r.pid" ] && __dtk_p=started
        [ -s "$__dtk_r.done" ] && __dtk_p=started && __dtk_s=$(cat "$__dtk_r.done")
        echo "dtk-run $__dtk_s $__dtk_p"
        [ -f "$__dtk_r.stdout" ] && cat -- "$__dtk_r.stdout"
        [ -f "$__dtk_r.stderr" ] && cat -- "$__dtk_r.stderr" >&2
        printf '\n%s\n' "$__dtk_m"
        [ -f "$__dtk_r.out" ] && cat -- "$__dtk_r.out"
        rm -f -- "$__dtk_r".pid "$__dtk_r".done "$__dtk_r".out "$__dtk_r".stdout "$__dtk_r".stderr
        exit 0
    "#]]
    .assert_eq(&script::collect_script(
        "/srv/n1",
        &script::run_file_stem("9"),
        "dtk-end-M",
    ));
    expect![[r#"
        __dtk_h=$HOME
        cd -- /srv/n1 2>/dev/null || exit 0
        __dtk_r=.dtk-run-9
        __dtk_j=; __dtk_t=; __dtk_g=
        [ -s "$__dtk_r.pid" ] && read -r __dtk_j __dtk_t __dtk_g < "$__dtk_r.pid"
        if [ -n "$__dtk_g" ]; then
          __dtk_doomed() {
            __dtk_tab=$(for __dtk_e in /proc/[0-9]*; do
              read -r __dtk_l < "$__dtk_e/stat" 2>/dev/null || continue
              __dtk_l=${__dtk_l##*) }; set -- $__dtk_l; echo "${__dtk_e#/proc/} $2 $3 ${20}"
            done)
            __dtk_o=" $__dtk_j "; __dtk_c=1
            while [ $__dtk_c = 1 ]; do
              __dtk_c=0
              while read -r __dtk_p __dtk_pp __dtk_pg __dtk_st; do
                case $__dtk_o in *" $__dtk_p "*) continue ;; esac
                case $__dtk_o in *" $__dtk_pp "*) __dtk_o="$__dtk_o$__dtk_p "; __dtk_c=1; continue ;; esac
                [ "$__dtk_pg" = "$__dtk_g" ] && [ "$__dtk_p" != "$__dtk_g" ] || continue
                if [ "$__dtk_st" -gt "$__dtk_t" ] || { [ "$__dtk_st" -eq "$__dtk_t" ] && [ "$__dtk_p" -ge "$__dtk_j" ]; }; then
                  __dtk_o="$__dtk_o$__dtk_p "; __dtk_c=1
                fi
              done <<__DTK_TABLE__
        $__dtk_tab
        __DTK_TABLE__
            done
            echo $__dtk_o
          }
          kill -TERM $(__dtk_doomed) 2>/dev/null
          __dtk_i=0
          while [ $__dtk_i -lt 20 ] && kill -0 "$__dtk_j" 2>/dev/null; do
            sleep 0.1; __dtk_i=$((__dtk_i + 1))
          done
          kill -KILL $(__dtk_doomed) 2>/dev/null
          kill -KILL $(__dtk_doomed) 2>/dev/null
        elif [ -s "$__dtk_r.pid" ]; then
          __dtk_p=$(cat "$__dtk_r.pid")
          kill -TERM "-$__dtk_p" 2>/dev/null || kill -TERM "$__dtk_p" 2>/dev/null
          __dtk_i=0
          while [ $__dtk_i -lt 20 ] && kill -0 "$__dtk_p" 2>/dev/null; do
            sleep 0.1; __dtk_i=$((__dtk_i + 1))
          done
          kill -KILL "-$__dtk_p" 2>/dev/null || kill -KILL "$__dtk_p" 2>/dev/null
        fi
        rm -f -- "$__dtk_r".pid "$__dtk_r".done "$__dtk_r".out "$__dtk_r".stdout "$__dtk_r".stderr
        exit 0
    "#]]
    .assert_eq(&script::kill_script("/srv/n1", &script::run_file_stem("9")));
}

#[test]
fn requests_are_checked_without_echoing_values() {
    let check = |req: ExecRequest, expected: Expect| {
        expected.assert_eq(&format!("{:?}", script::check_request(&req)));
    };
    check(
        ExecRequest::new("/w").env("OK_1", "v").line("true"),
        expect![["Ok(())"]],
    );
    check(
        ExecRequest::new("/w").env("1BAD", "hidden"),
        expect![[
            r#"Err("environment name \"1BAD\" is not a shell variable name ([A-Za-z_][A-Za-z0-9_]*)")"#
        ]],
    );
    check(
        ExecRequest::new("/w").env("K", "hid\0den"),
        expect![[r#"Err("the value of environment variable K contains a NUL byte")"#]],
    );
    check(
        ExecRequest::new(""),
        expect![[r#"Err("the work directory is empty")"#]],
    );
    check(
        ExecRequest::new("/w/a\nb"),
        expect![[r#"Err("the work directory contains a newline")"#]],
    );
    check(
        ExecRequest::new("/w").line("ok").line("a\0b"),
        expect![[r#"Err("script line 2 contains a NUL byte")"#]],
    );
    let debug = format!(
        "{:?}",
        ExecRequest::new("/w")
            .env("TOKEN", "hunter2")
            .line("echo hunter2")
    );
    expect![[r#"ExecRequest { script_lines: 1, env_names: ["TOKEN"], workdir: "/w", module_dir: None, timeout: 3600s, cancelled: false }"#]]
    .assert_eq(&debug);
}

#[test]
fn collected_reports_parse() {
    let check = |stdout: &str, expected: Expect| {
        let parsed = script::parse_collected(stdout.as_bytes(), "M").map(|c| {
            let out = String::from_utf8(c.stdout).expect("utf-8");
            (c.status, c.started, out, c.outputs)
        });
        expected.assert_eq(&format!("{parsed:?}"));
    };
    check(
        "dtk-run 0 started\nsome output\nM\nurl=http://x/?a=b\n\nbad line\n# comment\n=novalue\nid= 4 \n",
        expect![[
            r#"Ok((Some(0), true, "some output", [("url", "http://x/?a=b"), ("id", " 4 ")]))"#
        ]],
    );
    check(
        "dtk-run none unstarted\n",
        expect![[r#"Ok((None, false, "", []))"#]],
    );
    check(
        "dtk-run 3 started\ncut short",
        expect![[r#"Err("the run's report is cut short")"#]],
    );
    check(
        "",
        expect![[r#"Err("the run's status report is missing or malformed")"#]],
    );
    check(
        "dtk-run x started\n",
        expect![[r#"Err("the run's recorded exit status is not a number")"#]],
    );
}

fn args_text(args: &[String]) -> String {
    args.join(" ")
}

#[test]
fn master_and_session_command_lines() {
    let mut h = host();
    h.host_key_policy = HostKeyPolicy::TrustOnFirstUse;
    let args = command::master_args(
        &h,
        "/run/dtk/abc",
        "/home/me/.dtk/known_hosts",
        Duration::from_secs(120),
    )
    .expect("args");
    expect![[r#"-F /dev/null -f -N -o ControlMaster=yes -o ControlPath=/run/dtk/abc -o ControlPersist=120 -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=/home/me/.dtk/id_ed25519 -o UserKnownHostsFile=/home/me/.dtk/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=accept-new -o UpdateHostKeys=no -o CheckHostIP=no -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=3 -o LogLevel=DEBUG1 -p 2222 -l deploy -- 10.0.0.5"#]]
        .assert_eq(&args_text(&args));
    let args = command::session_args(&host(), "/run/dtk/abc", script::REMOTE_COMMAND);
    expect![[r#"-F /dev/null -T -o ControlMaster=no -o ControlPath=/run/dtk/abc -o ProxyCommand=false -o BatchMode=yes -o LogLevel=ERROR -p 2222 -l deploy -- 10.0.0.5 exec sh -s"#]]
        .assert_eq(&args_text(&args));
    let args = command::control_args(&host(), "/run/dtk/abc", "check");
    expect![["-F /dev/null -o ControlPath=/run/dtk/abc -O check -p 2222 -l deploy -- 10.0.0.5"]]
        .assert_eq(&args_text(&args));
}

#[test]
fn a_jump_host_gets_the_same_identity_and_host_key_checks() {
    let h = host().with_jump_host("bastion.example:2200");
    let args = command::master_args(&h, "/s", "/kh%%x", Duration::from_secs(1)).expect("args");
    let proxy = args
        .iter()
        .find(|a| a.starts_with("ProxyCommand="))
        .expect("proxy");
    expect!["ProxyCommand=ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=/home/me/.dtk/id_ed25519 -o 'UserKnownHostsFile=/kh%%%%x' -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o UpdateHostKeys=no -o CheckHostIP=no -o ConnectTimeout=10 -o LogLevel=ERROR -W [%h]:%p -p 2200 -l deploy -- bastion.example"]
        .assert_eq(proxy);
}

#[test]
fn jump_specs_parse() {
    let check = |spec: &str, expected: Expect| {
        expected.assert_eq(&format!("{:?}", parse_jump(spec, "me")));
    };
    check("bastion", expect![[r#"Ok(("me", "bastion", 22))"#]]);
    check(
        "ops@bastion:2200",
        expect![[r#"Ok(("ops", "bastion", 2200))"#]],
    );
    check("[::1]:2200", expect![[r#"Ok(("me", "::1", 2200))"#]]);
    check(
        "bastion:x",
        expect![[r#"Err("bad port in jump host \"bastion:x\"")"#]],
    );
    check(
        "-oProxyCommand=x",
        expect![[r#"Err("the jump host address \"-oProxyCommand=x\" starts with '-'")"#]],
    );
}

#[test]
fn option_paths_escape_percent_and_quote_spaces() {
    let check = |p: &str, expected: Expect| {
        expected.assert_eq(&format!("{:?}", command::option_path(Path::new(p))));
    };
    check("/a/b", expect![[r#"Some("/a/b")"#]]);
    check("/a b/100%", expect![[r#"Some("\"/a b/100%%\"")"#]]);
    check("/a\"b", expect![["None"]]);
}

#[test]
fn host_settings_that_ssh_would_misread_are_refused() {
    assert!(host().check().is_ok());
    for bad in [
        SshHost {
            address: "-oProxyCommand=x".into(),
            ..host()
        },
        SshHost {
            address: "a b".into(),
            ..host()
        },
        SshHost {
            user: "".into(),
            ..host()
        },
        SshHost {
            known_hosts_file: PathBuf::from("/a\"b"),
            ..host()
        },
        host().with_jump_host("x:notaport"),
    ] {
        assert!(
            matches!(bad.check(), Err(SshError::InvalidHost { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn master_keys_ignore_timeouts_but_not_identity() {
    let a = host();
    assert_eq!(
        a.master_key(),
        a.clone()
            .with_connect_timeout(Duration::from_secs(1))
            .master_key()
    );
    assert_ne!(
        a.master_key(),
        a.clone().with_identity_file("/other").master_key()
    );
    assert_ne!(a.master_key(), a.clone().with_port(22).master_key());
    assert_ne!(
        a.master_key(),
        a.clone()
            .with_host_key_policy(HostKeyPolicy::TrustOnFirstUse)
            .master_key()
    );
    assert_eq!(a.master_key().len(), 16);
}

// What ssh 9.2 prints, captured from real runs.
const UNKNOWN: &str = "debug1: Connecting to 127.0.0.1 [127.0.0.1] port 22022.\n\
debug1: kex: host key algorithm: ssh-ed25519\n\
debug1: Server host key: ssh-ed25519 SHA256:QpbdkYXm5LmBLTJNJwQEREG7ucXdSjl69tUYQ19pP8s\n\
No ED25519 host key is known for [127.0.0.1]:22022 and you have requested strict checking.\n\
Host key verification failed.\n";

const CHANGED: &str = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
It is also possible that a host key has just been changed.\n\
The fingerprint for the ED25519 key sent by the remote host is\n\
SHA256:X2TZSOkweMxqzsidaaK0bB4oPpelmqx+bNoUtkWBvmU.\n\
Please contact your system administrator.\n\
Add correct host key in /tmp/sx/kh to get rid of this message.\n\
Offending ED25519 key in /tmp/sx/kh:1\n\
  remove with:\n\
  ssh-keygen -f \"/tmp/sx/kh\" -R \"[127.0.0.1]:22022\"\n\
Host key for [127.0.0.1]:22022 has changed and you have requested strict checking.\n\
Host key verification failed.\n";

#[test]
fn ssh_failures_are_classified() {
    let check =
        |stderr: &str, expected: Expect| expected.assert_eq(&format!("{:?}", classify(stderr)));
    check(
        UNKNOWN,
        expect![[
            r#"HostKeyUnknown { fingerprint: Some("SHA256:QpbdkYXm5LmBLTJNJwQEREG7ucXdSjl69tUYQ19pP8s (ssh-ed25519)") }"#
        ]],
    );
    check(
        CHANGED,
        expect![[
            r#"HostKeyChanged { fingerprint: Some("SHA256:X2TZSOkweMxqzsidaaK0bB4oPpelmqx+bNoUtkWBvmU") }"#
        ]],
    );
    check(
        "debug1: Authentications that can continue: publickey\nroot@127.0.0.1: Permission denied (publickey).\n",
        expect![[r#"AuthRefused { detail: "root@127.0.0.1: Permission denied (publickey)." }"#]],
    );
    check(
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @         WARNING: UNPROTECTED PRIVATE KEY FILE!          @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         Permissions 0644 for '/k' are too open.\n\
         This private key will be ignored.\n\
         Load key \"/k\": bad permissions\n\
         root@127.0.0.1: Permission denied (publickey).\n",
        expect![[
            r#"AuthRefused { detail: "ssh ignored the private key: its permissions are too open (chmod 600 it)" }"#
        ]],
    );
    check(
        "Warning: Identity file /nope not accessible: No such file or directory.\n\
         root@127.0.0.1: Permission denied (publickey).\n",
        expect![[
            r#"AuthRefused { detail: "Warning: Identity file /nope not accessible: No such file or directory." }"#
        ]],
    );
    check(
        "Connection timed out during banner exchange\nConnection to 127.0.0.1 port 4 timed out\n",
        expect![["Timeout"]],
    );
    check(
        "ssh: connect to host 127.0.0.1 port 1: Connection refused\n",
        expect![[
            r#"Other { detail: "ssh: connect to host 127.0.0.1 port 1: Connection refused" }"#
        ]],
    );
    check(
        "",
        expect![[r#"Other { detail: "ssh exited with status 255" }"#]],
    );
}

#[test]
fn a_missing_master_is_recognised_from_ssh_words_only() {
    let gone = b"kex_exchange_identification: Connection closed by remote host\r\n";
    assert!(master_unavailable(b"", gone));
    assert!(master_unavailable(
        b"",
        b"Control socket connect(/x): Connection refused\nkex_exchange_identification: Connection closed by remote host\nConnection closed by UNKNOWN port 65535\n"
    ));
    assert!(
        !master_unavailable(b"partial output", gone),
        "the script had started"
    );
    assert!(!master_unavailable(b"", b""), "silence proves nothing");
    assert!(!master_unavailable(
        b"",
        b"my own error\nkex_exchange_identification: x\n"
    ));
}

#[test]
fn error_messages() {
    let h = host();
    let check = |e: SshError, expected: Expect| expected.assert_eq(&e.to_string());
    check(
        Failure::HostKeyUnknown {
            fingerprint: Some("SHA256:abc (ssh-ed25519)".into()),
        }
        .into_error(&h),
        expect![[
            "the host key of 10.0.0.5:2222 (SHA256:abc (ssh-ed25519)) is not in /home/me/.dtk/known_hosts and the host key policy is strict: check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and add its key to that file (ssh-keyscan -p 2222 10.0.0.5), or use the trust-on-first-use policy"
        ]],
    );
    check(
        Failure::HostKeyChanged {
            fingerprint: Some("SHA256:xyz".into()),
        }
        .into_error(&h),
        expect![[
            "HOST KEY CHANGED for 10.0.0.5:2222: the key it offers (SHA256:xyz) is not the one recorded in /home/me/.dtk/known_hosts. This may be a man-in-the-middle attack, and the connection was refused. If the host was reinstalled, verify its new key out of band, then remove the old entry (ssh-keygen -f /home/me/.dtk/known_hosts -R '[10.0.0.5]:2222')"
        ]],
    );
    check(
        Failure::AuthRefused {
            detail: "deploy@10.0.0.5: Permission denied (publickey).".into(),
        }
        .into_error(&h),
        expect![[
            "deploy@10.0.0.5:2222 refused authentication with key /home/me/.dtk/id_ed25519: is its public key in that user's authorized_keys? (deploy@10.0.0.5: Permission denied (publickey).)"
        ]],
    );
    check(
        Failure::Timeout.into_error(&h),
        expect![["connecting to 10.0.0.5:2222 timed out after 10s"]],
    );
    check(
        SshError::ConnectionDropped {
            host: "10.0.0.5".into(),
            port: 2222,
        },
        expect![["the connection to 10.0.0.5:2222 dropped during the action"]],
    );
    check(
        SshError::Timeout {
            host: "10.0.0.5".into(),
            port: 2222,
            timeout: Duration::from_millis(1500),
        },
        expect![["the action on 10.0.0.5:2222 timed out after 1.5s"]],
    );
}

#[test]
fn the_trailer_carries_stderr_in_its_own_section() {
    let t = script::split_trailer(
        b"out\n\ndtk-end-abc 2\nk=v\n\ndtk-end-abc err\nbad\nworse\n\ndtk-end-abc end\n",
        "dtk-end-abc",
    )
    .expect("a trailer");
    assert_eq!(t.stdout, b"out\n");
    assert_eq!(t.status, 2);
    assert_eq!(t.outputs, vec![("k".to_owned(), "v".to_owned())]);
    assert_eq!(t.stderr, b"bad\nworse\n");
    // Empty sections.
    let t = script::split_trailer(
        b"\ndtk-end-abc 0\n\ndtk-end-abc err\n\ndtk-end-abc end\n",
        "dtk-end-abc",
    )
    .expect("a trailer");
    assert_eq!((t.stdout.len(), t.outputs.len(), t.stderr.len()), (0, 0, 0));
}

#[test]
fn a_job_is_the_script_piped_into_a_session_of_its_own_or_in_a_subshell() {
    let files = script::run_words("~/w", &script::run_file_stem("1-2"));
    let job = "echo 'a'\nexit 0\n";
    expect![[r#"
        printf '%s' 'echo '\''a'\''
        exit 0
        ' | setsid "$__dtk_sh" -s 2>&1
        __dtk_s=$?; __dtk_q='"$__dtk_h"/w/.dtk-run-1-2.pid "$__dtk_h"/w/.dtk-run-1-2.out "$__dtk_h"/w/.dtk-run-1-2.stdout "$__dtk_h"/w/.dtk-run-1-2.stderr "$__dtk_h"/w/.dtk-run-1-2.done'
        printf '\n%s.done %s\n' dtk-end-M "$__dtk_s"
    "#]]
    .assert_eq(&script::shell_job(job, "dtk-end-M", &files));
    // Reading nothing else: not the shell's input, which holds the jobs to come.
    expect![[r#"
        (
        echo 'a'
        exit 0
        ) </dev/null 2>&1
        __dtk_s=$?; __dtk_q='"$__dtk_h"/w/.dtk-run-1-2.pid "$__dtk_h"/w/.dtk-run-1-2.out "$__dtk_h"/w/.dtk-run-1-2.stdout "$__dtk_h"/w/.dtk-run-1-2.stderr "$__dtk_h"/w/.dtk-run-1-2.done'
        printf '\n%s.done %s\n' dtk-end-M "$__dtk_s"
    "#]]
    .assert_eq(&script::subshell_job(job, "dtk-end-M", &files));
}

#[tokio::test]
async fn an_archive_is_compressed_once_for_every_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = super::SshPool::new(dir.path().join("ctl"), 4).expect("pool");
    let archive: Vec<u8> = b"component_defs:\n  step:\n"
        .iter()
        .copied()
        .cycle()
        .take(100_000)
        .collect();
    let first = super::gzipped(&pool.inner, &archive).await.expect("gzip");
    let again = super::gzipped(&pool.inner, &archive).await.expect("gzip");
    assert!(std::sync::Arc::ptr_eq(&first, &again), "compressed twice");
    assert!(first.len() < archive.len() / 10, "{} bytes", first.len());
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&first[..]), &mut plain)
        .expect("gunzip");
    assert!(plain == archive);
    // Other files are another entry; the oldest entries make room.
    for n in 0..5u8 {
        super::gzipped(&pool.inner, &[n; 10]).await.expect("gzip");
    }
    let after = super::gzipped(&pool.inner, &archive).await.expect("gzip");
    assert!(
        !std::sync::Arc::ptr_eq(&first, &after),
        "kept more than four"
    );
}

/// Every script dtk sends parses under each shell that may be a node's `sh` (dash, bash).
#[test]
fn every_script_parses_under_dash_and_bash() {
    let req = ExecRequest::new("~/nodes/web")
        .env("PORT", "8080")
        .line("echo \"port=$PORT\" >> \"$DTK_OUTPUT\"");
    let stem = script::run_file_stem("1-2-3");
    let words = script::run_words("~/w", &stem);
    let mut scripts = vec![
        script::SHELL_PROBE.to_owned(),
        script::shell_confirm(&[script::tombstone_word("/old", "0")]),
        script::kill_script("/srv/n1", &stem),
        script::collect_script("/srv/n1", &stem, "dtk-end-M"),
        script::cleanup_script(&[script::tombstone_word("/old", "0")]),
    ];
    for place in [
        script::Place::Session,
        script::Place::SessionJob,
        script::Place::Subshell,
    ] {
        let run = script::run_script(&req, "1-2-3", &stem, "dtk-end-M", &[], place);
        scripts.push(script::shell_job(&run, "dtk-end-M", &words));
        scripts.push(script::subshell_job(&run, "dtk-end-M", &words));
        scripts.push(run);
    }
    for shell in ["dash", "bash"] {
        for text in &scripts {
            let out = std::process::Command::new(shell)
                .args(["-n", "-c", text])
                .output()
                .expect("the shell runs");
            assert!(
                out.status.success(),
                "{shell} cannot parse:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The long-lived shell's protocol, run by dash and by bash (either may be a node's `sh`)
/// without any SSH: the probe, two subshell jobs on one set of run files (each confirmed),
/// then the end of input, which removes the files.
#[test]
fn a_long_lived_shell_runs_subshell_jobs_under_dash_and_bash() {
    for shell in ["dash", "bash"] {
        let tmp = tempfile::tempdir().expect("temp dir");
        let work = tmp.path().join("w");
        let workdir = work.to_str().expect("utf-8");
        let stem = script::run_file_stem("shell-1");
        let files = script::run_words(workdir, &stem);
        let mut input = String::from(script::SHELL_PROBE);
        let jobs = [
            // The pid file holds the job's own pid (not the shell's `$$`), start time and
            // group.
            "echo one; echo err >&2; echo k=v >> \"$DTK_OUTPUT\"; set -- a b; \
             read -r p t g < \"${DTK_OUTPUT%.out}.pid\"; [ \"$p\" != $$ ] && [ -n \"$g\" ] && echo pid",
            "echo \"[$1]\"; exit 3",
            "true",
        ];
        for (i, line) in jobs.iter().enumerate() {
            let req = ExecRequest::new(workdir)
                .env("N", i.to_string())
                .line(*line);
            let run = script::run_script(
                &req,
                &format!("r{i}"),
                &stem,
                &format!("M{i}"),
                &[],
                script::Place::Subshell,
            );
            input.push_str(&script::subshell_job(&run, &format!("M{i}"), &files));
            input.push_str(&script::shell_confirm(&[]));
        }
        let mut child = std::process::Command::new(shell)
            .arg("-s")
            .current_dir(tmp.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the shell starts");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(input.as_bytes()).expect("input");
        }
        let out = child.wait_with_output().expect("the shell ends");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ready = text.lines().next().unwrap_or_default();
        assert!(
            ready.starts_with(script::SHELL_READY) && ready.contains(" fork"),
            "{shell}: {text}"
        );
        // Each job's part of the stream ends in its done line.
        let mut parts = Vec::new();
        let mut rest = text.split_once('\n').map_or("", |(_, r)| r);
        for i in 0..jobs.len() {
            let (part, after) = rest
                .split_once(&script::done_prefix(&format!("M{i}")))
                .unwrap_or_else(|| panic!("{shell}: no end of job {i}: {text}"));
            let t = script::split_trailer(part.as_bytes(), &format!("M{i}"))
                .unwrap_or_else(|| panic!("{shell}: no trailer for job {i}: {text}"));
            parts.push(t);
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        }
        let t = &parts[0];
        assert_eq!(t.status, 0, "{shell}: {text}");
        assert_eq!(t.stdout, b"one\npid\n", "{shell}: {text}");
        assert_eq!(t.stderr, b"err\n", "{shell}");
        assert_eq!(t.outputs, [("k".to_owned(), "v".to_owned())], "{shell}");
        // The second job sees none of the first one's output, outputs or parameters.
        let t = &parts[1];
        assert_eq!(t.status, 3, "{shell}: {text}");
        assert_eq!(t.stdout, b"[]\n", "{shell}: {text}");
        assert!(t.outputs.is_empty() && t.stderr.is_empty(), "{shell}");
        // A job with nothing to say: its trailer in one piece, the same text.
        let t = &parts[2];
        assert_eq!(t.status, 0, "{shell}: {text}");
        assert!(t.stdout.is_empty() && t.stderr.is_empty() && t.outputs.is_empty());
        // The shell removed its files as it ended.
        let left: Vec<_> = std::fs::read_dir(&work)
            .expect("the work directory")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{shell} left {left:?}");
    }
}
