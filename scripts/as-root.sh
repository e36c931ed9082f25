# Sourced by the scripts that need root (the kernel parts: loading programs, veth pairs,
# namespaces): started as another user, re-runs the calling script through sudo, keeping
# PATH so that the user's rustup and cargo are found; without sudo, says how to run it.
if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "$(basename "$0"): needs root; run it as root (su -c 'bash $0')" >&2
        exit 1
    fi
    # The user's PATH, plus the sbin directories Debian leaves out of a user's PATH (ip,
    # ethtool, tc live there; sudo's own secure_path has them).
    exec sudo env "PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin" bash "$0" "$@"
fi
