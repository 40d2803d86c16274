#!/usr/bin/env bash
# Latency of an mcq ExecuTorch artifact on an Android phone, as a profile.json that `mcq profile compare` takes.
#
#   EXECUTOR_RUNNER=cmake-out-android/executor_runner deploy/android/profile.sh exports/mci0_fpn_512_int8.pte [RUNS] [OUT]
#
# Needs: adb with one device attached; EXECUTOR_RUNNER, ExecuTorch's executor_runner cross-built for the phone
# (arm64-v8a, XNNPACK backend linked: see ExecuTorch's "Building an ExecuTorch Android Demo App" / backend docs).
# It pushes the runner and the .pte to /data/local/tmp/mcq, runs the program RUNS times (default 20), keeps the
# log in OUT/executor_runner.txt and turns it into OUT/profile.json (default OUT: profiles/android-<model>).
# The runner prints a total over the runs, so the profile holds their mean (latency_stat says so).
# Not run in mcq's development: no phone was attached; the parser is tested on sample output in tests/data/devices.
set -euo pipefail
pte=${1:?usage: deploy/android/profile.sh MODEL.pte [RUNS] [OUT]}
runs=${2:-20}
runner=${EXECUTOR_RUNNER:?set EXECUTOR_RUNNER to an executor_runner built for Android with XNNPACK}
name=$(basename "$pte")
model=$(adb shell getprop ro.product.model | tr -d '\r')
release=$(adb shell getprop ro.build.version.release | tr -d '\r')
out=${3:-profiles/android-$(echo "$model" | tr 'A-Z ' 'a-z-')}
dir=/data/local/tmp/mcq
mkdir -p "$out"
adb shell mkdir -p "$dir"
adb push "$runner" "$dir/executor_runner" >/dev/null
adb push "$pte" "$dir/$name" >/dev/null
adb shell chmod +x "$dir/executor_runner"
adb shell "cd $dir && ./executor_runner --model_path $name --num_executions $runs" 2>&1 | tee "$out/executor_runner.txt"
python -m mcq.profile.devices executor-runner "$out/executor_runner.txt" --artifact "$name" \
    --device "$model, Android $release" --out "$out/profile.json"
