#!/bin/bash
#SBATCH --job-name=hpckit-dask
#SBATCH --partition=noshare
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=512M
#SBATCH --time=00:30:00
# hpckit dask worker job for site cluster-noshare, rendered from templates/worker_job.sh.j2.
# Submit by hand: sbatch worker_job.sh
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export PYTHONSAFEPATH=1
HPCKIT_SCRATCH=/tmp/hpckit-"$(id -u)"
mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }
export HPCKIT_SCRATCH
hpckit_mine=/tmp/hpckit-"$(id -u)"
mkdir -p -m 700 "$hpckit_mine" 2>/dev/null || { echo "hpckit: cannot create $hpckit_mine on $(hostname); fix: --set env_delivery.node_scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$hpckit_mine" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$hpckit_mine"; } || { echo "hpckit: $hpckit_mine on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set env_delivery.node_scratch=<a directory of yours>" >&2; exit 78; }
cd "$hpckit_mine"
hpckit_stage="$hpckit_mine"/stage-"$SLURM_JOB_ID"
mkdir -p -m 700 "$hpckit_stage" "$hpckit_stage/keys" || { echo "hpckit: cannot create $hpckit_stage on $(hostname); fix: --set env_delivery.node_scratch=<a writable node-local directory>" >&2; exit 78; }
hpckit_ended() { hpckit_rc=$?; rm -rf "$hpckit_stage"; if [ "$hpckit_rc" -ne 0 ] && [ "$hpckit_rc" -ne 143 ]; then hpckit_note="exit $hpckit_rc on $(hostname): $(tail -n 3 "/proc/$$/fd/2" 2>/dev/null | tr -s '\n\t' '  ' | cut -c1-400)"; scontrol update JobId="$SLURM_JOB_ID" Comment="$hpckit_note" >/dev/null 2>&1; fi; }
trap hpckit_ended EXIT; trap 'exit 143' TERM
hpckit_waited=0; while [ ! -e "$hpckit_stage/ready" ]; do [ "$hpckit_waited" -lt 600 ] || { echo "hpckit: the launch's files did not arrive in $hpckit_stage on $(hostname) within 600 s (the launch copies them into the job once it runs: did the launch end?)" >&2; exit 78; }; sleep 1; hpckit_waited=$((hpckit_waited + 1)); done
hpckit_tarball="$hpckit_stage/env.tar.gz"
hpckit_fail() { echo "hpckit: $1" >&2; exit 78; }
[ -r "$hpckit_tarball" ] || hpckit_fail "env tarball $hpckit_tarball not found or not readable on $(hostname); fix: hpckit pack -o $hpckit_tarball (on a file system the nodes see)"
hpckit_manifest=$(tar -xzOf "$hpckit_tarball" --occurrence=1 hpckit-env.json 2>/dev/null | tr -d '\n')
hpckit_hash=$(printf %s "$hpckit_manifest" | sed -n 's/.*"lock_hash": *"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' | head -n 1)
hpckit_env_key=$(printf %s "$hpckit_manifest" | sed -n 's/.*"env_key": *"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' | head -n 1)
hpckit_key_of=${hpckit_env_key:-$hpckit_hash}; hpckit_key=$(printf %.16s "${hpckit_key_of#sha256:}")
[ -n "$hpckit_key" ] || hpckit_fail "$hpckit_tarball is not an hpckit pack tarball (no hpckit-env.json: truncated or another file?); fix: hpckit pack -o $hpckit_tarball"
hpckit_cache="$hpckit_mine/envs"
HPCKIT_ENV_DIR="$hpckit_cache/$hpckit_key"
hpckit_unpack() { [ -x "$HPCKIT_ENV_DIR/run_in_env" ] && return 0; hpckit_tmp=$(mktemp -d "$hpckit_cache/.$hpckit_key.XXXXXX") || hpckit_fail "cannot write into $hpckit_cache on $(hostname); fix: --set env_delivery.node_scratch=<a writable node-local directory>"; tar -xzf "$hpckit_tarball" -C "$hpckit_tmp" 2>"$hpckit_tmp.err" || { hpckit_msg=$(tail -n 2 "$hpckit_tmp.err" | tr '\n' ' '); rm -rf "$hpckit_tmp" "$hpckit_tmp.err"; hpckit_fail "unpacking $hpckit_tarball into $hpckit_cache failed on $(hostname): $hpckit_msg(truncated, or no space?); fix: hpckit pack -o $hpckit_tarball"; }; rm -f "$hpckit_tmp.err"; hpckit_py=$("$hpckit_tmp/bin/python3" -c 'import platform; print(platform.python_version())' 2>&1) || { rm -rf "$hpckit_tmp"; hpckit_fail "the interpreter in $hpckit_tarball does not run on $(hostname) ($(uname -sm)): $hpckit_py; fix: hpckit pack on a machine of this platform"; }; mv -T "$hpckit_tmp" "$HPCKIT_ENV_DIR"; }
if [ ! -x "$HPCKIT_ENV_DIR/run_in_env" ]; then { mkdir -p "$hpckit_cache" 2>/dev/null && [ -w "$hpckit_cache" ]; } || hpckit_fail "node-local scratch $hpckit_cache is not writable on $(hostname); fix: --set env_delivery.node_scratch=<a writable node-local directory>"; exec 9>"$hpckit_cache/$hpckit_key.lock" && flock 9 && hpckit_unpack; exec 9>&-; fi
rm -f "$hpckit_tarball"
unset PYTHONDONTWRITEBYTECODE
export HPCKIT_ENV_DIR PATH="$HPCKIT_ENV_DIR/bin:$PATH" PYTHONNOUSERSITE=1 HPCKIT_LOCK_HASH="$hpckit_hash"
python3 -m distributed.cli.dask_worker "${HPCKIT_DASK_SCHEDULER:?export HPCKIT_DASK_SCHEDULER=tls://host:port}" \
    --tls-ca-file "${HPCKIT_DASK_TLS_DIR:?export HPCKIT_DASK_TLS_DIR=<the directory of the scheduler's cert.pem and key.pem: a launch's is <run dir>/tls>}/cert.pem" \
    --tls-cert "$HPCKIT_DASK_TLS_DIR/cert.pem" --tls-key "$HPCKIT_DASK_TLS_DIR/key.pem" \
    --nthreads 1 \
    --memory-limit 536870912 \
    --lifetime 1620s --lifetime-stagger 45s \
    --interface cl0 \
    --local-directory "$HPCKIT_SCRATCH" \
    --no-dashboard --dashboard-address 127.0.0.1:0 \
    --nanny
