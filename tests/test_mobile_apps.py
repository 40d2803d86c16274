"""The iOS and Android sample apps, checked without Xcode or the Android SDK: the Xcode project's targets hold the
right sources and resources (the perf harness compiles the app's own prediction code), the apps read the sidecar by
the schema's names, their bundled reference vectors are mcq's current ones, the Gradle wrapper suits the plugin, and
their camera code is there (`tests/test_app_install.py`: `mcq export --app`)."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mcq.apps.install import APPS
from mcq.apps.reference import reference_vector
from mcq.tasks.schema import SCHEMA_PATH

ROOT = Path(__file__).resolve().parents[1]
IOS, ANDROID = ROOT / "apps" / "ios", ROOT / "apps" / "android"
PBXPROJ = IOS / "McqSegment.xcodeproj" / "project.pbxproj"
KOTLIN = ANDROID / "app" / "src" / "main" / "java" / "dev" / "mcq" / "segment"
REFERENCES = {"ios": IOS / "McqSegmentTests" / "reference.json",
              "android": ANDROID / "app" / "src" / "test" / "resources" / "reference.json"}
SHARED = {"Segmenter.swift", "McqMetadata.swift", "Processing.swift"}  # the app's prediction code


# --- the Xcode project -------------------------------------------------------------------------------------------

_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|"((?:[^"\\]|\\.)*)"|([^\s{}()=;,"]+)|([{}()=;,])', re.S)


def parse_openstep(text: str):
    """The value of an old-style (OpenStep) property list, as project.pbxproj is written: dicts, lists, strings."""
    tokens = [(m[1] is not None and m[1]) or m[2] or m[3] for m in _TOKEN.finditer(text)
              if m[1] is not None or m[2] or m[3]]
    pos = 0

    def value():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            d = {}
            while tokens[pos] != "}":
                key = value()
                assert tokens[pos] == "=", f"'=' expected after {key}"
                pos += 1
                d[key] = value()
                assert tokens[pos] == ";", f"';' expected after {key}"
                pos += 1
            pos += 1
            return d
        if tok == "(":
            items = []
            while tokens[pos] != ")":
                items.append(value())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return items
        return tok

    result = value()
    assert pos == len(tokens), "trailing tokens"
    return result


@pytest.fixture(scope="module")
def project() -> dict:
    """objects of project.pbxproj, and per target: the files of its Sources and Resources phases (paths relative to
    apps/ios) and its build settings."""
    plist = parse_openstep(PBXPROJ.read_text())
    objects = plist["objects"]
    paths = {}

    def walk(group_id: str, base: Path) -> None:
        group = objects[group_id]
        here = base / group.get("path", "")
        for child in group.get("children", []):
            obj = objects[child]
            if obj["isa"] == "PBXGroup":
                walk(child, here)
            else:
                paths[child] = here / obj["path"]

    walk(objects[plist["rootObject"]]["mainGroup"], Path())
    targets = {}
    for tid in objects[plist["rootObject"]]["targets"]:
        t = objects[tid]
        phases = {objects[p]["isa"]: [paths[objects[f]["fileRef"]] for f in objects[p]["files"]] for p in t["buildPhases"]}
        configs = [objects[c]["buildSettings"] for c in objects[t["buildConfigurationList"]]["buildConfigurations"]]
        targets[t["name"]] = {"id": tid, "sources": phases.get("PBXSourcesBuildPhase", []),
                              "resources": phases.get("PBXResourcesBuildPhase", []), "settings": configs,
                              "type": t["productType"], "dependencies": t["dependencies"]}
    return {"objects": objects, "targets": targets, "paths": paths}


def _norm(path: Path) -> Path:
    """``path`` relative to apps/ios with ``..`` resolved lexically."""
    parts = []
    for p in path.parts:
        if p == "..":
            parts.pop() if parts and parts[-1] != ".." else parts.append(p)
        else:
            parts.append(p)
    return Path(*parts)


def test_the_parser_reads_what_xcode_writes():
    assert parse_openstep('{a = (b, "c d",); e = {f = "x\\"y";}; /* note */ g = h; // end\n}') == \
        {"a": ["b", "c d"], "e": {"f": 'x\\"y'}, "g": "h"}
    with pytest.raises(AssertionError):
        parse_openstep("{a = b}")


def test_every_swift_file_is_compiled_by_its_target(project):
    targets = {name: {_norm(p) for p in t["sources"]} for name, t in project["targets"].items()}
    app_files = {p.relative_to(IOS) for p in (IOS / "McqSegment").glob("*.swift")}
    tests = {p.relative_to(IOS) for p in (IOS / "McqSegmentTests").glob("*.swift")}
    perf = {_norm(Path("../..") / p.relative_to(ROOT)) for p in (ROOT / "deploy" / "ios").rglob("*.swift")}
    shared = {Path("McqSegment") / f for f in SHARED}
    assert set(targets) == {"McqSegment", "McqSegmentTests", "MCQPerfTests"}
    assert targets["McqSegment"] == app_files | {Path(APPS["ios"].model).relative_to("ios")}
    assert targets["McqSegmentTests"] == tests | {Path("McqSegment/Processing.swift")}
    assert targets["MCQPerfTests"] == perf | shared and perf == {Path("../../deploy/ios/MCQPerfTests/MCQPerfTests.swift")}
    for name, files in targets.items():  # every file the project compiles is there (but the model, installed later)
        assert all((IOS / f).is_file() for f in files if f.suffix == ".swift"), name


def test_the_harness_compiles_the_apps_files_not_a_copy(project):
    refs = {}
    for name in ("McqSegment", "MCQPerfTests"):
        ids = [project["objects"][b]["fileRef"] for p in project["objects"][project["targets"][name]["id"]]["buildPhases"]
               for b in project["objects"][p]["files"]]
        refs[name] = {project["paths"][i].name: i for i in ids}
    for f in SHARED:
        assert refs["McqSegment"][f] == refs["MCQPerfTests"][f]  # one file reference, two targets
    assert not list((ROOT / "deploy" / "ios").rglob("Segmenter.swift"))
    perf = project["targets"]["MCQPerfTests"]
    assert perf["type"] == "com.apple.product-type.bundle.unit-test" and perf["dependencies"]
    assert all("McqSegment.app" in s["TEST_HOST"] for s in perf["settings"])  # hosted: the app bundles the model


def test_the_test_target_bundles_the_reference_vector(project):
    [resource] = project["targets"]["McqSegmentTests"]["resources"]
    assert resource == REFERENCES["ios"].relative_to(IOS) and REFERENCES["ios"].is_file()
    assert project["targets"]["McqSegment"]["resources"] == []


def test_the_app_asks_for_the_camera_and_targets_ios_17(project):
    for s in project["targets"]["McqSegment"]["settings"]:
        assert "camera" in s["INFOPLIST_KEY_NSCameraUsageDescription"] and s["GENERATE_INFOPLIST_FILE"] == "YES"
    camera = (IOS / "McqSegment" / "Camera.swift").read_text()
    assert "AVCaptureVideoDataOutput" in camera and "alwaysDiscardsLateVideoFrames = true" in camera
    project_settings = [project["objects"][c]["buildSettings"] for o in project["objects"].values()
                        if o.get("isa") == "PBXProject"
                        for c in project["objects"][o["buildConfigurationList"]]["buildConfigurations"]]
    assert {s["IPHONEOS_DEPLOYMENT_TARGET"] for s in project_settings} == {"17.0"}
    units = re.findall(r'case (\w+) = "([^"]+)"', (IOS / "McqSegment" / "Segmenter.swift").read_text())
    assert [u[1] for u in units] == ["CPU", "CPU+GPU", "All"]


def test_the_shared_scheme_tests_both_targets(project):
    scheme = (IOS / "McqSegment.xcodeproj" / "xcshareddata" / "xcschemes" / "McqSegment.xcscheme").read_text()
    ET.fromstring(scheme)  # well-formed XML
    ids = {name: t["id"] for name, t in project["targets"].items()}
    for name in ("McqSegmentTests", "MCQPerfTests"):
        assert re.search(rf'<TestableReference[^<]*<BuildableReference[^>]*BlueprintIdentifier = "{ids[name]}"', scheme)
    assert f'BlueprintIdentifier = "{ids["McqSegment"]}"' in scheme
    assert "-scheme McqSegment" in (ROOT / "deploy" / "ios" / "profile.sh").read_text()


# --- metadata read by the schema's names ------------------------------------------------------------------------

def _schema_keys() -> dict[str, set[str]]:
    schema = json.loads(SCHEMA_PATH.read_text())
    props = schema["properties"]
    return {"top": set(props), "input": set(props["input"]["properties"]),
            "output": set(schema["$defs"]["output"]["properties"]), "coreml_input": set(props["coreml_input"]["properties"])}


NEEDED = {"top": {"task", "encoder", "head", "class_names", "palette", "input", "output"},
          "input": {"shape", "resize"}, "output": {"name", "dtype", "units", "max_depth"}}


def test_android_reads_the_sidecar_by_the_schemas_names():
    source = (KOTLIN / "McqMetadata.kt").read_text()
    read = {"top": set(), "input": set(), "output": set()}
    for obj, key in re.findall(r'\b(meta|input|output)\.(?:get|opt)\w*\("(\w+)"\)', source):
        read["top" if obj == "meta" else obj].add(key)
    read["input"] |= set(re.findall(r'floats\("(\w+)"\)', source))
    schema = _schema_keys()
    for level, keys in read.items():
        assert keys <= schema[level], f"{level}: {keys - schema[level]} are not the schema's names"
    needed = {**NEEDED, "input": NEEDED["input"] | {"range", "mean", "std", "layout", "color"}}
    for level, keys in needed.items():
        assert keys <= read[level], f"{level}: the app does not read {keys - read[level]}"


def test_ios_reads_the_metadata_by_the_schemas_names():
    source = (IOS / "McqSegment" / "McqMetadata.swift").read_text()
    renamed = dict(re.findall(r"case (\w+) = \"(\w+)\"", source))
    structs = {}
    for name, body in re.findall(r"\n    struct (\w+): Decodable \{(.*?)\n    \}", source, re.S):
        structs[name] = {renamed.get(p, p) for p in re.findall(r"let (\w+):", body)}
    top = source.split("static let tasks")[1]
    structs["McqMetadata"] = {renamed.get(p, p) for p in re.findall(r"^    let (\w+):", top, re.M)}
    schema = _schema_keys()
    levels = {"McqMetadata": "top", "Input": "input", "Output": "output", "CoreMLInput": "coreml_input"}
    for struct, level in levels.items():
        assert structs[struct] <= schema[level], f"{struct}: {structs[struct] - schema[level]} not in the schema"
    for level, keys in {**NEEDED, "coreml_input": {"scale", "bias", "std_in_model"},
                        "top": NEEDED["top"] | {"coreml_input"}}.items():
        struct = next(s for s, lv in levels.items() if lv == level)
        assert keys <= structs[struct], f"{struct} does not read {keys - structs[struct]}"


def test_the_apps_colour_depth_with_mcqs_ramp():
    from mcq.apps.reference import DEPTH_RAMP

    ramp = [list(c) for c in DEPTH_RAMP]
    sources = {"web": ROOT / "apps" / "web" / "mcq.js", "ios": IOS / "McqSegment" / "Processing.swift",
               "android": KOTLIN / "Processing.kt"}
    for app, path in sources.items():
        text = path.read_text()
        table = text[re.search(r"(DEPTH_RAMP|depthRamp)\b[^=\n(]*= ", text).start():].split("\n\n")[0]
        found = [list(map(int, t)) for t in re.findall(r"(\d+), (\d+), (\d+)", table)]
        assert found == ramp, app


def test_the_apps_take_labels_as_they_come():
    """A labels artifact (`mcq export --outputs labels`) holds the argmax: each app reads its class indices, in the
    dtype its format gives them, instead of taking the argmax itself."""
    from mcq.export.labels import FORMS

    web = (ROOT / "apps" / "web" / "mcq.js").read_text()
    assert 'output.name === "labels" ? Uint8Array.from(data) : argmax(data, dims)' in web
    ios = (IOS / "McqSegment" / "Segmenter.swift").read_text()
    assert 'if meta.output.name == "labels"' in ios and "MLShapedArray<Int32>(converting: output)" in ios
    assert FORMS["coreml"][0] == "int32"  # Core ML has no uint8 outputs
    android = (KOTLIN / "Segmenter.kt").read_text()
    assert 'if (meta.outputName == "labels")' in android and FORMS["executorch"][0] == "uint8"
    assert '"int32" -> tensor.dataAsIntArray' in android and "else -> tensor.dataAsUnsignedByteArray" in android


# --- the bundled reference vectors ------------------------------------------------------------------------------

@pytest.mark.parametrize("app", list(REFERENCES))
def test_bundled_reference_is_mcqs_current_one(app):
    ref = json.loads(REFERENCES[app].read_text())
    meta = {"input": ref["input"], "class_names": [""] * ref["logits"]["shape"][1],
            **({"coreml_input": ref["coreml_input"]} if "coreml_input" in ref else {})}
    assert ref == json.loads(json.dumps(reference_vector(meta, seed=ref["seed"])))
    assert app != "ios" or "coreml_input" in ref  # the iOS test needs what Core ML does with the pixels


# --- Android build files ----------------------------------------------------------------------------------------

MIN_GRADLE = {"8.5": (8, 7), "8.6": (8, 7), "8.7": (8, 9)}  # AGP major.minor -> oldest Gradle (AGP release notes)


def test_gradle_wrapper_suits_the_android_plugin():
    agp = re.search(r'id\("com.android.application"\) version "(\d+\.\d+)', (ANDROID / "build.gradle.kts").read_text())[1]
    props = (ANDROID / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    gradle = re.search(r"distributionUrl=https\\://services.gradle.org/distributions/gradle-(\d+)\.(\d+)-bin.zip", props)
    assert gradle and (int(gradle[1]), int(gradle[2])) >= MIN_GRADLE[agp]
    assert "gradle wrapper --gradle-version" in (ANDROID / "README.md").read_text()
    app = (ANDROID / "app" / "build.gradle.kts").read_text()
    assert 'testImplementation("org.json:json' in app and 'implementation("androidx.camera:camera-view' in app
    assert (ANDROID / "app" / "src" / "test" / "java" / "dev" / "mcq" / "segment" / "ProcessingTest.kt").is_file()


def test_android_uses_the_camera():
    activity = (KOTLIN / "MainActivity.kt").read_text()
    assert "ImageAnalysis.Builder()" in activity and "Preview.Builder()" in activity and "PickVisualMedia" in activity
    assert 'android.permission.CAMERA' in (ANDROID / "app" / "src" / "main" / "AndroidManifest.xml").read_text()
