# `scripts/bench --peers`: dtk against its peers on the same workloads, in one run.
# Sourced by scripts/bench after its helpers (now, run_timed, row, ratio, le, gen_w_module,
# shell_w, gen_tf_w, tf_init, tf_apply) and variables (dtk, work, target_dir, M, K, N,
# EC2) are defined.
#
#   local W(M x K):  dtk converge | shell loop (one sh per action) | terraform |
#                    ansible-playbook (local connection) | pyinfra @local
#   SSH W(M x K):    M private sshds on 127.0.0.1..M (scripts/lib/sshd.sh): dtk converge on
#                    a dtk/ssh target | one ssh per action | ansible-playbook | pyinfra
#   EC2:             EC2 instances of a node group on an aws/network target, against a
#                    private moto_server | a boto3 script making the same API calls
#
# ansible-core, pyinfra and boto3 are installed into TARGET_DIR/peers-venv (like moto in
# scripts/lib/deps.sh); moto comes from scripts/lib/deps.sh's venv.

DTK_PEERS_PIP=("ansible-core>=2.17,<2.20" "pyinfra>=3.2,<4" "boto3>=1.34,<2")

ensure_peers() {
    local venv=$target_dir/peers-venv
    local stamp=$venv/.dtk-peers-1
    if [ -x "$venv/bin/ansible-playbook" ] && [ -x "$venv/bin/pyinfra" ] && [ -f "$stamp" ]; then
        return 0
    fi
    echo "==> installing ${DTK_PEERS_PIP[*]} into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${DTK_PEERS_PIP[@]}" >&2
    touch "$stamp"
}

# ------------------------------------------------------------------------ local W

peers_local() {
    local venv=$target_dir/peers-venv
    echo "== peers: W($M x $K) on this machine" >&2
    # R rounds on fresh services, the two alternating which goes first (as in the suite's W
    # row); the medians. One round alone was the first converge of a fresh home.
    local d_w s_w r d_times=() s_times=()
    for ((r = 1; r <= R; r++)); do
        "$dtk" service stage bench/w w -n "pw$r" >/dev/null
        if ((r % 2)); then
            s_times+=("$(run_timed shell_w "$work/peers-shell-w-$r")")
            d_times+=("$(run_timed "$dtk" service converge "pw$r" --concurrency "$N")")
        else
            d_times+=("$(run_timed "$dtk" service converge "pw$r" --concurrency "$N")")
            s_times+=("$(run_timed shell_w "$work/peers-shell-w-$r")")
        fi
    done
    d_w=$(median "${d_times[@]}")
    s_w=$(median "${s_times[@]}")
    row "dtk W($M x $K) local" "${d_w} s" "shell, one sh per action" "${s_w} s" "$(ratio "$d_w" "$s_w")x (dtk/shell)" "<= 0.8x" "$(le "$(ratio "$d_w" "$s_w")" 0.8)" "$(load)"
    if command -v terraform >/dev/null; then
        gen_tf_w "$work/peers-tf-w"
        run_timed tf_init "$work/peers-tf-w" >/dev/null
        local tf
        tf=$(run_timed tf_apply "$work/peers-tf-w")
        row "terraform, W($M x $K) local, -parallelism=$N" "${tf} s" "dtk" "${d_w} s" "$(ratio "$tf" "$d_w")x (peer/dtk)" "-" "-" "$(load)"
    fi
    # Ansible: one task per action (a node's actions in order), the local connection.
    mkdir -p "$work/ansible-local"
    {
        echo "- hosts: localhost"
        echo "  connection: local"
        echo "  gather_facts: false"
        echo "  tasks:"
        echo "  - name: node directories"
        echo "    file: {path: '$work/ansible-local/out/n{{ item }}', state: directory}"
        echo "    loop: \"{{ range(1, $M + 1) | list }}\""
        local k
        for ((k = 1; k <= K; k++)); do
            echo "  - name: action $k"
            echo "    shell: echo ok > $work/ansible-local/out/n{{ item }}/f$k"
            echo "    loop: \"{{ range(1, $M + 1) | list }}\""
        done
    } >"$work/ansible-local/w.yml"
    local an
    an=$(ANSIBLE_PYTHON_INTERPRETER=$venv/bin/python run_timed "$venv/bin/ansible-playbook" -i localhost, -f "$N" "$work/ansible-local/w.yml")
    [ "$(find "$work/ansible-local/out" -name 'f*' | wc -l)" -eq $((M * K)) ] || { echo "bench: ansible did not write $((M * K)) files" >&2; exit 1; }
    row "ansible-playbook $("$venv/bin/python" -c 'import ansible; print(ansible.__version__)' 2>/dev/null), W($M x $K) local" "${an} s" "dtk" "${d_w} s" "$(ratio "$an" "$d_w")x (peer/dtk)" "-" "-" "$(load)"
    # pyinfra: the same shell commands, on @local.
    mkdir -p "$work/pyinfra-local"
    cat >"$work/pyinfra-local/deploy.py" <<PY
from pyinfra.operations import server
for m in range(1, $M + 1):
    d = "$work/pyinfra-local/out/n%d" % m
    server.shell(name="n%d mkdir" % m, commands=["mkdir -p " + d])
    for k in range(1, $K + 1):
        server.shell(name="n%d a%d" % (m, k), commands=["echo ok > %s/f%d" % (d, k)])
PY
    local py
    py=$(cd "$work/pyinfra-local" && run_timed "$venv/bin/pyinfra" -y @local deploy.py)
    [ "$(find "$work/pyinfra-local/out" -name 'f*' | wc -l)" -eq $((M * K)) ] || { echo "bench: pyinfra did not write $((M * K)) files" >&2; exit 1; }
    row "pyinfra $("$venv/bin/pyinfra" --version 2>/dev/null | awk '{ print $NF }'), W($M x $K) local" "${py} s" "dtk" "${d_w} s" "$(ratio "$py" "$d_w")x (peer/dtk)" "-" "-" "$(load)"
}

# -------------------------------------------------------------------------- SSH W

peers_ssh() {
    local venv=$target_dir/peers-venv
    # SSH_OPENSSH=backports: OpenSSH from Debian 12's backports (10.0: a post-quantum key
    # exchange at a tenth of 9.2's CPU) for the sshds and for every client, dtk's, Ansible's
    # and the loop's, which find `ssh` on PATH; pyinfra speaks SSH itself (paramiko).
    # Both are this function's own: the rest of the bench keeps the system's OpenSSH.
    local PATH=$PATH SSHD_PREFIX=
    if [ "${SSH_OPENSSH:-system}" = backports ]; then
        # shellcheck source=scripts/lib/deps.sh
        . "$here/scripts/lib/deps.sh"
        ensure_openssh_backports "$target_dir"
        SSHD_PREFIX=$target_dir/openssh-bpo
        PATH=$SSHD_PREFIX/usr/bin:$PATH
    fi
    local openssh
    openssh=$(ssh -V 2>&1 | cut -d' ' -f1 | tr '_' ' ')
    echo "== peers: W($M x $K) over SSH to $M private sshds, $openssh" >&2
    # shellcheck source=scripts/lib/sshd.sh
    . "$here/scripts/lib/sshd.sh"
    mkdir -p "$work/sshd"
    sshd_start "$work/sshd" "$M"
    local port=$SSHD_PORT user key=$work/sshd/user_key kh=$work/sshd/known_hosts n
    user=$(id -un)
    # dtk: a dtk/ssh target of M hosts (host n is 127.0.0.n, named like the W nodes).
    local hosts=""
    for ((n = 1; n <= M; n++)); do
        hosts+="{name: n$n, address: 127.0.0.$n, port: $port, workdir: $work/ssh-dtk}, "
    done
    "$dtk" service stage dtk/ssh target --base -n sshhosts >/dev/null
    "$dtk" service set-attribute sshhosts inventory/hosts "[${hosts%, }]" >/dev/null
    "$dtk" service set-attribute sshhosts inventory/user "$user" >/dev/null
    "$dtk" service set-attribute sshhosts inventory/private_key_path "$key" >/dev/null
    "$dtk" service set-attribute sshhosts inventory/known_hosts_path "$kh" >/dev/null
    run_timed "$dtk" service converge sshhosts >/dev/null
    "$dtk" service stage bench/w w -n sshw --target sshhosts >/dev/null
    "$dtk" service stage bench/w w -n sshw2 --target sshhosts >/dev/null
    # Cold: dtk keeps its connections for the next command (ControlPersist, as Ansible does);
    # end those the target's converge kept, so that this run connects to every host, as the
    # peers' runs do.
    local sock
    for sock in "$DTK_HOME"/run/ssh/*; do
        [ -S "$sock" ] && ssh -F /dev/null -o ControlPath="$sock" -O exit dtk-bench 2>/dev/null
    done
    local d_cold d_s
    d_cold=$(run_timed "$dtk" service converge sshw --concurrency "$N")
    [ "$(find "$work/ssh-dtk" -name 'f*' | wc -l)" -eq $((M * K)) ] || { echo "bench: dtk over SSH did not write $((M * K)) files" >&2; exit 1; }
    # Warm: a second service on the same hosts, over the connections the first run kept.
    d_s=$(run_timed "$dtk" service converge sshw2 --concurrency "$N")
    [ "$(find "$work/ssh-dtk" -name 'f*' | wc -l)" -eq $((2 * M * K)) ] || { echo "bench: dtk over SSH did not write $((M * K)) more files" >&2; exit 1; }
    # One ssh per action, N at once.
    ssh_one() {
        ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i "$key" \
            -o UserKnownHostsFile="$kh" -o GlobalKnownHostsFile=/dev/null \
            -o StrictHostKeyChecking=yes -o LogLevel=ERROR -p "$port" -l "$user" "127.0.0.$1" \
            "mkdir -p '$work/ssh-loop/n$1' && echo ok > '$work/ssh-loop/n$1/f$2'"
    }
    export -f ssh_one
    export key kh port user work
    ssh_loop() {
        local a m
        for ((a = 1; a <= K; a++)); do for ((m = 1; m <= M; m++)); do echo "$m $a"; done; done |
            xargs -P "$N" -n 2 bash -c 'ssh_one "$@"' _
    }
    local s_s
    s_s=$(run_timed ssh_loop)
    row "dtk W($M x $K) over SSH ($openssh), $M sshds, cold (connects)" "${d_cold} s" "one ssh per action" "${s_s} s" "$(ratio "$s_s" "$d_cold")x (loop/dtk)" "-" "-" "$(load)"
    row "dtk W($M x $K) over SSH ($openssh), connections kept" "${d_s} s" "one ssh per action" "${s_s} s" "$(ratio "$s_s" "$d_s")x (loop/dtk)" "-" "-" "$(load)"
    # Ansible over SSH: its fastest standard settings (pipelining, ControlPersist).
    local ad=$work/ansible-ssh
    mkdir -p "$ad/cp"
    {
        echo "[nodes]"
        for ((n = 1; n <= M; n++)); do echo "n$n ansible_host=127.0.0.$n"; done
        echo "[nodes:vars]"
        echo "ansible_port=$port"
        echo "ansible_user=$user"
        echo "ansible_ssh_private_key_file=$key"
        echo "ansible_ssh_common_args='-F /dev/null -o UserKnownHostsFile=$kh -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes'"
        echo "ansible_python_interpreter=/usr/bin/python3"
    } >"$ad/hosts"
    cat >"$ad/ansible.cfg" <<CFG
[defaults]
forks = $N
host_key_checking = True
gathering = explicit
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=120s
control_path_dir = $ad/cp
CFG
    {
        echo "- hosts: nodes"
        echo "  gather_facts: false"
        echo "  tasks:"
        echo "  - name: node directory"
        echo "    file: {path: '$ad/out/{{ inventory_hostname }}', state: directory}"
        local k
        for ((k = 1; k <= K; k++)); do
            echo "  - name: action $k"
            echo "    shell: echo ok > $ad/out/{{ inventory_hostname }}/f$k"
        done
    } >"$ad/w.yml"
    local an
    an=$(cd "$ad" && ANSIBLE_CONFIG=$ad/ansible.cfg run_timed "$venv/bin/ansible-playbook" -i hosts w.yml)
    [ "$(find "$ad/out" -name 'f*' | wc -l)" -eq $((M * K)) ] || { echo "bench: ansible over SSH did not write $((M * K)) files" >&2; exit 1; }
    local an_r
    an_r=$(ratio "$an" "$d_cold")
    row "ansible-playbook W($M x $K) over SSH ($openssh), forks=$N, pipelining" "${an} s" "dtk, cold" "${d_cold} s" "${an_r}x (peer/dtk)" ">= 50x" "$(le 50 "$an_r")" "$(load)"
    an_r=$(ratio "$an" "$d_s")
    row "ansible-playbook W($M x $K) over SSH ($openssh), forks=$N, pipelining" "${an} s" "dtk, kept" "${d_s} s" "${an_r}x (peer/dtk)" ">= 50x" "$(le 50 "$an_r")" "$(load)"
    # pyinfra over SSH (paramiko), N hosts at once.
    local pd=$work/pyinfra-ssh
    mkdir -p "$pd"
    cat >"$pd/inventory.py" <<PY
nodes = [
    ("127.0.0.%d" % n, {"ssh_port": $port, "ssh_user": "$user", "ssh_key": "$key",
                         "ssh_known_hosts_file": "$kh", "node": "n%d" % n})
    for n in range(1, $M + 1)
]
PY
    cat >"$pd/deploy.py" <<PY
from pyinfra import host
from pyinfra.operations import server
d = "$pd/out/" + host.data.node
server.shell(name="node directory", commands=["mkdir -p " + d])
for k in range(1, $K + 1):
    server.shell(name="action %d" % k, commands=["echo ok > %s/f%d" % (d, k)])
PY
    local py
    py=$(cd "$pd" && run_timed "$venv/bin/pyinfra" -y --parallel "$N" inventory.py deploy.py)
    [ "$(find "$pd/out" -name 'f*' | wc -l)" -eq $((M * K)) ] || { echo "bench: pyinfra over SSH did not write $((M * K)) files" >&2; exit 1; }
    local py_r
    py_r=$(ratio "$py" "$d_cold")
    row "pyinfra W($M x $K) over SSH, --parallel $N" "${py} s" "dtk, cold" "${d_cold} s" "${py_r}x (peer/dtk)" ">= 10x" "$(le 10 "$py_r")" "$(load)"
    py_r=$(ratio "$py" "$d_s")
    row "pyinfra W($M x $K) over SSH, --parallel $N" "${py} s" "dtk, kept" "${d_s} s" "${py_r}x (peer/dtk)" ">= 10x" "$(le 10 "$py_r")" "$(load)"
    sshd_stop
}

# ---------------------------------------------------------------------------- EC2

peers_ec2() {
    local venv=$target_dir/peers-venv moto=$target_dir/moto-venv
    # The plugin's bundled modules reach the catalog with the first `dtk service` command;
    # whether the plugin is there at all, `dtk provider list` says.
    if ! "$dtk" provider list 2>/dev/null | grep -q '^aws '; then
        row "dtk, $EC2 EC2 instances against moto" "not measured" "boto3 script" "-" "-" "<= 1.3x" "no AWS plugin (dtk-provider-aws) beside dtk" "$(load)"
        return 0
    fi
    # shellcheck source=scripts/lib/deps.sh
    . "$here/scripts/lib/deps.sh"
    ensure_moto "$target_dir"
    echo "== peers: $EC2 EC2 instances against a private moto_server" >&2
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # moto scans every tag it holds to answer one resource's tags, so each describe costs
    # time in proportion to the fleet; scripts/lib/moto_indexed.py answers that lookup from
    # moto's own per-resource map (same answers), so that 500 instances can be measured.
    "$moto/bin/python" "$here/scripts/lib/moto_indexed.py" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
    local moto_pid=$!
    # shellcheck disable=SC2064
    trap "kill $moto_pid 2>/dev/null || true; cleanup" EXIT
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=AKIADTKBENCH00000001 AWS_SECRET_ACCESS_KEY=bench-secret-not-real \
        AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$work/no-aws-config \
        AWS_SHARED_CREDENTIALS_FILE=$work/no-aws-config
    unset AWS_PROFILE AWS_SESSION_TOKEN
    local ami
    ami=$("$venv/bin/python" - <<'PY'
import boto3
ec2 = boto3.client("ec2")
imgs = ec2.describe_images(Owners=["099720109477"], Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd/ubuntu-*"]}])["Images"]
print(sorted(i["ImageId"] for i in imgs)[0])
PY
)
    "$dtk" service stage aws/network target_iam -n awsb --base >/dev/null
    "$dtk" service set-attribute awsb vpc[vpc1]/region us-east-1 >/dev/null
    # A /24 holds 251 instances; EC2 of them need room (a /21 holds 2,043).
    "$dtk" service set-attribute awsb 'vpc_subnet[vpc1-default]/subnet_length' 21 >/dev/null
    "$dtk" service set-attribute awsb images/images "{'*': {ubuntu_jammy: {ami: $ami, sizes: {small: t3.small}}}}" >/dev/null
    run_timed "$dtk" service converge awsb >/dev/null
    mkdir -p "$work/modules/ec2"
    cat >"$work/modules/ec2/dtk.module.yaml" <<YAML
dsl_version: 1.0.0
module: bench/ec2
version: 1.0.0
description: A node group of EC2 instances, for scripts/bench --peers.
component_defs:
  role:
    attributes:
      name: {type: string, default: worker}
assemblies:
  fleet:
    components:
    - node_group[fleet]:
        attributes: {image: ubuntu_jammy, size: small, cardinality: $EC2}
        components: [role]
YAML
    "$dtk" module install "$work/modules/ec2" >/dev/null
    "$dtk" service stage bench/ec2 fleet -n fleet --target awsb >/dev/null
    local d_e
    d_e=$(run_timed "$dtk" service converge fleet --concurrency "$N")
    # boto3: per instance, the calls dtk's provider makes (find the member by its tags,
    # its index among them, launch it with a client token and tags, poll until it runs),
    # 8 at once (the provider's request limit).
    local b_e
    b_e=$(run_timed "$venv/bin/python" - "$EC2" <<'PY'
import sys, time, uuid
from concurrent.futures import ThreadPoolExecutor
import boto3
count = int(sys.argv[1])
ec2 = boto3.client("ec2")
def tagged(k, v):
    return {"Name": "tag:" + k, "Values": [v]}
def one_of(tag):
    r = ec2.describe_subnets(Filters=[tagged("dtk:service", "awsb")])["Subnets"]
    return r
subnet = ec2.describe_subnets(Filters=[tagged("dtk:service", "awsb")])["Subnets"][0]["SubnetId"]
group = ec2.describe_security_groups(Filters=[tagged("dtk:service", "awsb")])["SecurityGroups"][0]["GroupId"]
image = ec2.describe_images(Owners=["099720109477"], Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd/ubuntu-*"]}])["Images"]
image = sorted(i["ImageId"] for i in image)[0]
def member(i):
    tags = {"dtk:managed": "true", "dtk:service": "boto3", "dtk:node": "fleet", "dtk:index": str(i), "Name": "boto3-fleet-%d" % i}
    found = ec2.describe_instances(Filters=[tagged("dtk:managed", "true"), tagged("dtk:service", "boto3"), tagged("dtk:node", "fleet"), tagged("dtk:index", str(i)), {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    ts = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    out = ec2.run_instances(ImageId=image, InstanceType="t3.small", MinCount=1, MaxCount=1, SubnetId=subnet, SecurityGroupIds=[group], ClientToken=uuid.uuid4().hex, TagSpecifications=[{"ResourceType": "instance", "Tags": ts}, {"ResourceType": "volume", "Tags": ts}])
    iid = out["Instances"][0]["InstanceId"]
    pause = 0.25
    while True:
        r = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        if r["State"]["Name"] == "running":
            return iid
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
with ThreadPoolExecutor(8) as pool:
    ids = list(pool.map(member, range(1, count + 1)))
assert len(set(ids)) == count
PY
)
    row "dtk, $EC2 EC2 instances (node group) against moto" "${d_e} s" "boto3 script, same calls" "${b_e} s" "$(ratio "$d_e" "$b_e")x (dtk/boto3)" "<= 1.3x" "$(le "$(ratio "$d_e" "$b_e")" 1.3)" "$(load)"
    kill "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
    trap cleanup EXIT
}
