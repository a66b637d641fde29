"""Built-in detectors and parsers, run for real where weights are available."""

import cv2
import numpy as np
import pytest

from facefix import plugins
from facefix.components import CELEBAMASK_CLASSES, ComponentContext
from facefix.weights import WeightsResolver
from conftest import shared_path


def build(kind, name, model_dir):
    resolver = WeightsResolver(model_dir=model_dir, allow_download=False, progress=False)
    return plugins.get_component(kind, name).build(ComponentContext(resolve_weights=resolver.resolve))


@pytest.mark.parametrize("name", ["retinaface_mobile0.25", "yunet", "retinaface_bundled"])
def test_detectors_find_the_six_faces_of_the_group_photo(name, shared_weights):
    detector = build("detector", name, shared_weights)
    image = cv2.imread(str(shared_path("photos", "insightface_t1.jpg")))
    faces = detector.detect(image)
    assert len(faces) == 6
    for face in faces:
        x1, y1, x2, y2 = face.box
        assert 0.8 <= face.score <= 1.0
        assert face.landmarks.shape == (5, 2)
        left_eye, right_eye, nose, left_mouth, right_mouth = face.landmarks
        # order contract: image-left eye first, eyes above nose above mouth
        assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < max(left_mouth[1], right_mouth[1]) + 1
        assert x1 - 5 <= nose[0] <= x2 + 5 and y1 - 5 <= nose[1] <= y2 + 5


def test_retinaface_and_yunet_agree_on_landmarks(shared_weights):
    image = cv2.imread(str(shared_path("photos", "insightface_t1.jpg")))
    retina = sorted(build("detector", "retinaface_mobile0.25", shared_weights).detect(image), key=lambda f: f.box[0])
    yunet = sorted(build("detector", "yunet", shared_weights).detect(image), key=lambda f: f.box[0])
    for a, b in zip(retina, yunet):
        # within a fifth of the eye distance: same points, same order
        assert np.abs(a.landmarks - b.landmarks).max() < 0.35 * a.eye_distance


def test_bundled_retinaface_agrees_with_facexlibs_on_every_photo(shared_weights, photos):
    """The ONNX file shipped in weights/ is another training of RetinaFace MobileNet-0.25:
    same faces, landmarks within a fifth of the eye distance."""
    bundled = build("detector", "retinaface_bundled", None)
    reference = build("detector", "retinaface_mobile0.25", shared_weights)
    compared = 0
    for path in sorted(photos.iterdir()):
        image = cv2.imread(str(path))
        if image is None:
            continue
        ours = sorted(bundled.detect(image), key=lambda f: f.box[0])
        theirs = sorted(reference.detect(image), key=lambda f: f.box[0])
        confident = [f for f in theirs if f.score > 0.95]
        for face in confident:  # every clear face is found, at the same place
            match = min(ours, key=lambda f: np.abs(f.landmarks - face.landmarks).max())
            assert np.abs(match.landmarks - face.landmarks).max() < 0.2 * face.eye_distance, path.name
            compared += 1
    assert compared >= 20


def test_bundled_detector_needs_no_model_dir_and_matches_its_digest(tmp_path):
    from facefix.weights import bundled_dir, get_entry, sha256_file

    entry = get_entry("retinaface_bundled")
    resolver = WeightsResolver(model_dir=tmp_path, allow_download=False, progress=False)
    path = resolver.resolve(entry)
    assert path.parent == bundled_dir()
    assert path.stat().st_size == entry.size and sha256_file(path) == entry.sha256
    (tmp_path / entry.filename).write_bytes(path.read_bytes())  # a user's copy in --model-dir wins
    assert resolver.resolve(entry) == tmp_path / entry.filename


def test_missing_detector_weights_name_the_file_and_folder(tmp_path):
    with pytest.raises(Exception) as caught:
        build("detector", "retinaface_resnet50", tmp_path)
    message = str(caught.value)
    assert "detection_Resnet50_Final.pth" in message and str(tmp_path) in message and "\n" not in message


@pytest.mark.parametrize("name, module", [("parsenet", "parsenet"), ("bisenet", "bisenet")])
def test_facexlib_parsers_load_official_layout_and_speak_celebamask(name, module, tmp_path):
    """No official parser weights here: save a randomly initialised network in the
    official layout and check the plugin loads it strictly and returns valid labels."""
    import torch

    from facefix.compat import ensure_torchvision

    ensure_torchvision()
    if name == "parsenet":
        from facexlib.parsing.parsenet import ParseNet

        network = ParseNet(in_size=512, out_size=512, parsing_ch=19)
        filename = "parsing_parsenet.pth"
    else:
        from facexlib.parsing.bisenet import BiSeNet

        network = BiSeNet(num_class=19)
        filename = "parsing_bisenet.pth"
    torch.manual_seed(0)
    torch.save(network.state_dict(), tmp_path / filename)
    parser = build("parser", name, tmp_path)
    faces = np.random.default_rng(0).integers(0, 255, (2, 128, 128, 3), np.uint8)
    labels = parser.parse(faces)
    assert labels.shape == (2, 128, 128) and labels.dtype == np.uint8
    assert labels.max() < len(CELEBAMASK_CLASSES)


def test_bisenet_label_map_is_a_permutation_into_celebamask_order():
    from facefix_plugins.facexlib_parsing.parsers import BISENET_LABELS

    assert sorted(BISENET_LABELS.tolist()) == list(range(19))
    bisenet_names = ["background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
                     "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat"]
    assert [CELEBAMASK_CLASSES[c] for c in BISENET_LABELS] == bisenet_names


def test_retinaface_fast_path_matches_facexlib_exactly(shared_weights):
    """facefix decodes RetinaFace itself (vectorised, cached anchors); it must agree with
    facexlib's own detect_faces on a real photo."""
    import torch

    from facefix.compat import ensure_torchvision

    ensure_torchvision()
    from facexlib.detection.retinaface_utils import PriorBox

    from facefix_plugins.retinaface.detector import prior_boxes

    detector = build("detector", "retinaface_mobile0.25", shared_weights)
    cfg = detector.model.cfg
    for height, width in ((97, 131), (640, 480)):
        expected = PriorBox(cfg, image_size=(height, width)).forward()
        assert torch.equal(prior_boxes(height, width, tuple(map(tuple, cfg["min_sizes"])), tuple(cfg["steps"])), expected)
    image = cv2.imread(str(shared_path("photos", "insightface_t1.jpg")))
    with torch.no_grad():
        reference = detector.model.detect_faces(image, conf_threshold=0.8, nms_threshold=0.4)
    faces = detector.detect(image)
    assert len(faces) == len(reference) == 6
    for face, row in zip(faces, reference):
        assert np.allclose(face.box, row[:4], atol=1e-3)
        assert np.allclose(face.landmarks.ravel(), row[5:15], atol=1e-3)
        assert abs(face.score - row[4]) < 1e-5


@pytest.mark.parametrize("name", ["retinaface_mobile0.25", "yunet", "retinaface_bundled"])
def test_a_detection_threshold_of_zero_is_a_threshold(name, shared_weights):
    """``--detection-threshold 0`` used to become the default 0.8 (``0 or 0.8``): now 0
    keeps every candidate, so it finds at least as many faces, with scores below 0.8."""
    from facefix import compose

    resolver = WeightsResolver(model_dir=shared_weights, allow_download=False, progress=False)
    spec = plugins.get_component("detector", name)
    image = cv2.imread(str(shared_path("photos", "insightface_t1.jpg")))
    default = compose.build(spec, device="cpu", resolver=resolver).detect(image)
    everything = compose.build(spec, device="cpu", resolver=resolver,
                               selection=compose.ComponentSelection(detection_threshold=0.0)).detect(image)
    assert len(everything) > len(default) == 6
    assert min(face.score for face in everything) < 0.8 <= min(face.score for face in default)


def test_the_bundled_detector_takes_no_banister_knob_for_a_face(shared_weights):
    """At RetinaFace's own 0.8 the bundled export finds a fourth "face" in GFPGAN's 10045.png,
    a 27 px banister knob scored 0.877; its calibrated default keeps the three real ones."""
    from facefix import compose

    resolver = WeightsResolver(model_dir=shared_weights, allow_download=False, progress=False)
    spec = plugins.get_component("detector", "retinaface_bundled")
    image = cv2.imread(str(shared_path("photos", "gfpgan__inputs_whole_imgs_10045.png")))
    default = compose.build(spec, device="cpu", resolver=resolver).detect(image)
    lenient = compose.build(spec, device="cpu", resolver=resolver,
                            selection=compose.ComponentSelection(detection_threshold=0.8)).detect(image)
    assert len(default) == 3 and min(face.score for face in default) > 0.99
    assert len(lenient) == 4
    knob = min(lenient, key=lambda face: face.score)
    assert 0.8 < knob.score < 0.97 and knob.box[2] - knob.box[0] < 40


def test_small_faces_in_a_large_photo_are_found_in_full_resolution_tiles():
    """A group photo (faces of about 55 px) placed at its own scale in a 48 MP frame: its
    faces shrink below the detector's reach on the 2048 px copy (14 px); the tiles at full resolution find every one the
    photo alone gives, each once, where it is."""
    from facefix.pipeline import detect

    detector = build("detector", "retinaface_bundled", None)
    photo = cv2.imread(str(shared_path("photos", "insightface_t1.jpg")))
    photo = cv2.resize(photo, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # faces of about 55 px
    alone = detector.detect(photo)
    assert len(alone) == 6
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(60, 200, (6000, 8000, 3), np.uint8), (0, 0), 3)
    top, left = 2100, 5300  # across tile boundaries (tiles start every 1792 px)
    frame[top:top + photo.shape[0], left:left + photo.shape[1]] = photo
    copy_only = detect(detector, frame, tiled=False)
    found = detect(detector, frame)
    assert len(copy_only) < len(alone) == len(found)
    for face in alone:
        x1, y1, x2, y2 = face.box
        centre = np.array([(x1 + x2) / 2 + left, (y1 + y2) / 2 + top])
        nearest = min(np.linalg.norm(np.array([(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2]) - centre)
                      for f in found)
        assert nearest < 0.1 * (x2 - x1)
    # --min-face-size above what the copy finds: no tiles, nothing more
    assert len(detect(detector, frame, min_face_size=200)) == len(copy_only)
