#!/usr/bin/env bash
# Core ML latency on an iPhone through XCTest, as a profile.json that `mcq profile compare` takes.
#
#   deploy/ios/profile.sh MCQApp.xcodeproj MCQApp "platform=iOS,name=My iPhone" mci0_fpn_512_fp16.mlpackage [OUT]
#
# The project's test target holds deploy/ios/MCQPerfTests/MCQPerfTests.swift and the app bundles the model.
# xcodebuild prints the XCTest line "measured [Clock Monotonic Time, s] average: ..., values: [...]"; the
# profile records every run, their median and p90. Not run in mcq's development (no Mac or iPhone there); the
# parser is tested on sample output in tests/data/devices.
set -euo pipefail
project=${1:?usage: deploy/ios/profile.sh PROJECT SCHEME DESTINATION MODEL.mlpackage [OUT]}
scheme=${2:?scheme}
destination=${3:?destination, e.g. "platform=iOS,name=My iPhone"}
artifact=$(basename "${4:?model}")
out=${5:-profiles/ios}
mkdir -p "$out"
# TEST_RUNNER_<NAME> reaches the test process as <NAME> (Xcode 13+)
TEST_RUNNER_MCQ_MODEL=${artifact%.mlpackage} xcodebuild test -project "$project" -scheme "$scheme" -destination "$destination" \
    -only-testing:MCQPerfTests/MCQPerfTests/testModelLatency 2>&1 | tee "$out/xcodebuild.txt"
python -m mcq.profile.devices xctest "$out/xcodebuild.txt" --artifact "$artifact" --device "$destination" \
    --out "$out/profile.json"
