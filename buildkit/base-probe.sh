# What `make base-facts` runs inside a base image (buildkit/basefacts.py): only commands
# every base has, no GPU.  One `fact=value` line per fact of images/base-facts.yaml.
py="$(command -v python3 || true)"
echo "python=$py"
if [ -n "$py" ]; then
  stdlib="$("$py" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
  case "${PIP_BREAK_SYSTEM_PACKAGES:-}" in
    1|true|yes|on) em=false ;;
    *) if [ -e "$stdlib/EXTERNALLY-MANAGED" ]; then em=true; else em=false; fi ;;
  esac
  echo "pip_externally_managed=$em"
fi
cudart_wheel='import glob, nvidia, sys
sys.exit(not any(glob.glob(p + "/cu*/lib/libcudart.so.*") for p in nvidia.__path__))'
if [ -x /usr/local/cuda/bin/nvcc ]; then cuda=toolkit
elif ls /usr/local/cuda/lib64/libcudart.so.* >/dev/null 2>&1; then cuda=runtime
elif [ -n "$py" ] && "$py" -c "$cudart_wheel" 2>/dev/null; then cuda=wheels
else cuda=none; fi
echo "cuda=$cuda"
if ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then lists=true; else lists=false; fi
echo "apt_lists=$lists"
echo "held_packages=$(apt-mark showhold 2>/dev/null | sort | tr '\n' ' ')"
if [ -e /opt/nvidia/nvidia_entrypoint.sh ]; then marker=true; else marker=false; fi
echo "ngc_marker=$marker"
if [ -d /opt/hpcx ]; then echo hpcx=/opt/hpcx; else echo hpcx=; fi
echo "opal_prefix=${OPAL_PREFIX:-}"
if [ -n "$py" ] && "$py" -c 'import nvidia.nccl' 2>/dev/null; then nccl=wheel
elif ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2 '; then nccl=system
else nccl=none; fi
echo "nccl=$nccl"
