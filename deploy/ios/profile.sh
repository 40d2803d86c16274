#!/usr/bin/env bash
# Core ML latency on an iPhone through XCTest, as a profile.json that `mcq profile compare` takes.
#
#   mcq export coreml --checkpoint CKPT --app ios     # installs the model into apps/ios (McqModel.mlpackage)
#   deploy/ios/profile.sh "platform=iOS,name=My iPhone" mci0_fpn_512_fp16.mlpackage [OUT] [COMPUTE_UNITS]
#
# It runs MCQPerfTests (this folder), a test target of apps/ios/McqSegment.xcodeproj that compiles the app's own
# prediction code, on the model the app bundles; MODEL names that artifact in the profile. COMPUTE_UNITS: CPU,
# CPU+GPU or All (default). xcodebuild prints the XCTest line "measured [Clock Monotonic Time, s] average: ...,
# values: [...]"; the profile records every run, their median and p90. Not run in mcq's development (no Mac or
# iPhone there); the parser is tested on sample output in tests/data/devices.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
destination=${1:?usage: deploy/ios/profile.sh DESTINATION MODEL.mlpackage [OUT] [COMPUTE_UNITS]}
artifact=$(basename "${2:?model: the artifact installed with mcq export coreml --app ios}")
out=${3:-profiles/ios}
mkdir -p "$out"
# TEST_RUNNER_<NAME> reaches the test process as <NAME> (Xcode 13+)
units=${4:-All}
TEST_RUNNER_MCQ_COMPUTE_UNITS=$units xcodebuild test -project "$here/../../apps/ios/McqSegment.xcodeproj" \
    -scheme McqSegment -destination "$destination" -only-testing:MCQPerfTests/MCQPerfTests/testModelLatency 2>&1 \
    | tee "$out/xcodebuild.txt"
python -m mcq.profile.devices xctest "$out/xcodebuild.txt" --artifact "$artifact" --device "$destination" \
    --compute-units "$units" --out "$out/profile.json"
