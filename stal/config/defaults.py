"""Every config key of stal, with its default and what it means.

This is the only defaults file. YAML files in ``configs/`` hold only what differs from
here; ``KEY VALUE`` pairs on the command line override the YAML. Names follow PySlowFast
where the concept exists (RNG_SEED, OUTPUT_DIR, TRAIN.*, SOLVER.*, AVA.*), so configs and
habits carry over. Only builders read this object; modules take explicit arguments.
"""

from fvcore.common.config import CfgNode

_C = CfgNode()

# Seed of every random choice in training (model init, sampling order, synthesis draws).
_C.RNG_SEED = 0
# Directory for config.yaml, log.jsonl, checkpoints and metrics.json of one run.
_C.OUTPUT_DIR = "./output"
# GPUs per machine; 0 trains on the CPU. Several GPUs: one process per GPU, launched with
# torchrun --nproc_per_node NUM_GPUS tools/train_net.py ... (docs/training.md).
_C.NUM_GPUS = 0
# Log a line to log.jsonl every this many iterations.
_C.LOG_PERIOD = 10

# ---------------------------------------------------------------------------- train
_C.TRAIN = CfgNode()
# Run training (False: only evaluate the checkpoint in TEST.CHECKPOINT_FILE_PATH / OUTPUT_DIR).
_C.TRAIN.ENABLE = True
# Training data: "demo" (synthesized on the fly from the embedded demo banks), "demo_weak" (the
# demo's partner-scene BatchMix weak STAL benchmark: clip labels only, MODEL.MIL_POOLING,
# docs/weak_demo.md), "synthesis" (SYNTHESIS.* banks), "ava" (AVA.*), "ucf24" (UCF24.*) or
# "jhmdb" (JHMDB.*); see docs/datasets.md for preparing each.
_C.TRAIN.DATASET = "demo"
# Clips per optimizer step, summed over all processes and accumulation steps (as in
# PySlowFast, divided among the processes): the same value trains the same way on any number
# of GPUs. Must be divisible by processes x GRAD_ACCUM_STEPS.
_C.TRAIN.BATCH_SIZE = 8
# Split each optimizer step into this many forward/backward passes (gradients summed): a
# large TRAIN.BATCH_SIZE with the memory of a small one.
_C.TRAIN.GRAD_ACCUM_STEPS = 1
# "fp32" (no autocast), "bf16" or "fp16" autocast; fp16 adds a gradient scaler, which also
# scales the guidance's inner input gradient.
_C.TRAIN.MIXED_PRECISION = "fp32"
# Save a checkpoint every this many epochs (the last epoch is always saved).
_C.TRAIN.CHECKPOINT_PERIOD = 1
# Also save every this many iterations inside an epoch (0: off); resumes mid-epoch exactly.
_C.TRAIN.CHECKPOINT_ITERS = 0
# Evaluate on the test split every this many epochs during training (0: only at the end).
_C.TRAIN.EVAL_PERIOD = 0
# metrics.json entry (higher is better) that picks checkpoint_best.pyth at each evaluation.
_C.TRAIN.BEST_METRIC = "frame_mAP"
# Stop when this many optimizer steps in a row had a non-finite loss or gradient (each is
# skipped, logged and counted).
_C.TRAIN.MAX_NONFINITE_STEPS = 10
# Resume even when OUTPUT_DIR's checkpoint was trained with a different config (logged).
_C.TRAIN.ALLOW_CONFIG_CHANGE = False
# Resume from the newest checkpoint in OUTPUT_DIR/checkpoints when there is one.
_C.TRAIN.AUTO_RESUME = True
# Keep only the newest this many epoch checkpoints (0 keeps all).
_C.TRAIN.CHECKPOINT_KEEP = 3
# Stop after this many iterations in total (0: no limit); for smoke tests.
_C.TRAIN.MAX_ITERS = 0

# ----------------------------------------------------------------------------- test
_C.TEST = CfgNode()
# Evaluate frame-mAP on the test split after training.
_C.TEST.ENABLE = True
# Checkpoint evaluated by tools/test_net.py ("": the newest in OUTPUT_DIR/checkpoints).
_C.TEST.CHECKPOINT_FILE_PATH = ""
# Test data: "demo" (the embedded AVA-format test split), "ava", "ucf24" or "jhmdb".
_C.TEST.DATASET = "demo"
# Clips per forward pass at test time.
_C.TEST.BATCH_SIZE = 16
# Held-out synthesized clips (unseen seed) for validation: off-target energy, accuracy.
_C.TEST.NUM_ENERGY_CLIPS = 256

# ----------------------------------------------------------------------------- data
_C.DATA = CfgNode()
# Frames per input clip (T).
_C.DATA.NUM_FRAMES = 8
# Take every this many frames of the source video when building a clip.
_C.DATA.SAMPLING_RATE = 1
# Input frames are resized/cropped to this square size (H = W, pixels).
_C.DATA.CROP_SIZE = 64
# Per-channel mean subtracted from clips in [0, 1] (RGB).
_C.DATA.MEAN = [0.45, 0.45, 0.45]
# Per-channel std dividing clips after the mean (RGB).
_C.DATA.STD = [0.225, 0.225, 0.225]

_C.DATA_LOADER = CfgNode()
# Worker processes of the data loader (0: load in the main process).
_C.DATA_LOADER.NUM_WORKERS = 0

# ---------------------------------------------------------------------------- model
_C.MODEL = CfgNode()
# Registered detector name (see stal.models.MODEL_REGISTRY), e.g. "small3d", "x3d_xs".
_C.MODEL.ARCH = "small3d"
# Number of action classes the head predicts.
_C.MODEL.NUM_CLASSES = 4
# "softmax" (one action per actor: cross-entropy) or "bce" (multi-label, AVA: sigmoid BCE).
_C.MODEL.LOSS_FUNC = "softmax"
# Base channel width of the small 3D CNN.
_C.MODEL.WIDTH = 16
# Spatial stride of the small 3D CNN's feature map (2, 4, 8 or 16); other models fix their own.
_C.MODEL.SPATIAL_STRIDE = 8
# Dropout before the classifier of the ROI head.
_C.MODEL.DROPOUT_RATE = 0.0
# RoIAlign output size (square) of the ROI head.
_C.MODEL.ROI_SIZE = 4
# Weak supervision (clip labels only): pool each clip's per-proposal scores with "max", "lse"
# or "mean" multiple-instance pooling into one score row per clip ("": off, one row per box).
# Needs TRAIN.DATASET "synthesis" or "demo_weak" (one label per clip, the actors' boxes as proposals).
_C.MODEL.MIL_POOLING = ""
# Local pretrained weights loaded at build time: stal, pytorchvideo, PySlowFast (.pyth) or
# torchvision file, keys mapped and reported (docs/models.md); "": random init. No downloads.
_C.MODEL.PRETRAINED = ""

# --------------------------------------------------------------------------- solver
_C.SOLVER = CfgNode()
# "adamw" or "sgd".
_C.SOLVER.OPTIMIZING_METHOD = "adamw"
# Peak learning rate.
_C.SOLVER.BASE_LR = 0.002
# "cosine" (decay to COSINE_END_LR at the last iteration, see COSINE_AFTER_WARMUP), "constant" or
# "steps_with_relative_lrs" (BASE_LR * LRS[i] from epoch STEPS[i] on).
_C.SOLVER.LR_POLICY = "cosine"
# Epochs where each stage of steps_with_relative_lrs starts (the first is 0), e.g. [0, 10, 15].
_C.SOLVER.STEPS = []
# Learning rate of each stage relative to BASE_LR, e.g. [1.0, 0.1, 0.01].
_C.SOLVER.LRS = []
# Final learning rate of the cosine policy.
_C.SOLVER.COSINE_END_LR = 0.0
# Cosine over the whole schedule (False, PySlowFast's default: warm-up ramps to the cosine's value
# at its end) or starting from BASE_LR at the end of warm-up (True; stal's own configs use this).
_C.SOLVER.COSINE_AFTER_WARMUP = False
# Linear learning-rate warm-up length, in epochs (fractions allowed).
_C.SOLVER.WARMUP_EPOCHS = 0.5
# Learning rate the warm-up starts from.
_C.SOLVER.WARMUP_START_LR = 0.0
# Clip the global gradient L2 norm to this value (0: off; the norm is logged either way).
_C.SOLVER.CLIP_GRAD_L2NORM = 0.0
# Number of training epochs.
_C.SOLVER.MAX_EPOCH = 6
# SGD momentum (ignored by adamw).
_C.SOLVER.MOMENTUM = 0.9
# Weight decay (decoupled for adamw).
_C.SOLVER.WEIGHT_DECAY = 1e-4

# ------------------------------------------------------------------------ synthesis
_C.SYNTHESIS = CfgNode()
# Fewest actors pasted on one background clip.
_C.SYNTHESIS.ACTORS_MIN = 1
# Most actors pasted on one background clip.
_C.SYNTHESIS.ACTORS_MAX = 2
# Probability that the background's scene type is the one paired with the bottom actor's
# action (the synthesis bias of real tube collections); otherwise the scene is uniform. Used
# by scene-labelled background sources only (the demo's scenes); banks of footage ignore it.
_C.SYNTHESIS.SCENE_BIAS = 0.9
# Clips synthesized per training epoch.
_C.SYNTHESIS.CLIPS_PER_EPOCH = 2000
# Tube bank directory (data_prep/build_tube_bank.py) for TRAIN.DATASET "synthesis"; "" uses
# the demo's procedural actors (DEMO.SEED), generated in memory.
_C.SYNTHESIS.TUBE_BANK = ""
# Background bank directory (data_prep/build_background_bank.py); "" uses demo scenes.
_C.SYNTHESIS.BACKGROUND_BANK = ""
# Actor height (tallest per-frame box of the tube) as a fraction of the clip height: range.
_C.SYNTHESIS.SCALE_MIN = 0.3
# Largest actor height, same units as SCALE_MIN.
_C.SYNTHESIS.SCALE_MAX = 0.6
# Actor trajectory: "static" or "linear" (constant drift of up to MAX_DRIFT of the frame).
_C.SYNTHESIS.TRAJECTORY = "static"
# Largest drift over a clip, as a fraction of the frame size (linear trajectories).
_C.SYNTHESIS.MAX_DRIFT = 0.2
# Probability that an actor enters or leaves mid-clip (visible for a random run of frames).
_C.SYNTHESIS.PARTIAL_PROB = 0.0
# Keep every actor's canvas inside the frame (False: up to half of it may leave the frame).
_C.SYNTHESIS.KEEP_INSIDE = True
# Probability of mirroring an actor horizontally.
_C.SYNTHESIS.FLIP_PROB = 0.5
# Draw order: "random" or "depth" (actors whose feet are lower are in front).
_C.SYNTHESIS.OCCLUSION = "random"
# A tube longer than the clip is an error (True) instead of a random temporal crop (False).
_C.SYNTHESIS.STRICT_LENGTH = False
# Edge treatment: "hard" (the tube's alpha as is) or "feather" (alpha softened inwards, per
# draw, by the numpy compositor: about 10x the compiled paste; tubes feathered once when the
# bank is built, e.g. build_tube_bank.py --feather, use the compiled soft blend instead).
_C.SYNTHESIS.EDGE = "hard"
# Width of the feathered edge in pixels (EDGE "feather").
_C.SYNTHESIS.FEATHER_RADIUS = 2
# Strength 0..1 of matching the actor's colour statistics to the background under it (0: off).
_C.SYNTHESIS.COLOUR_MATCH = 0.0
# Tube resizing: "nearest" (exact source pixels, fastest) or "bilinear" (premultiplied,
# antialiased; several times slower, see docs/synthesis.md).
_C.SYNTHESIS.INTERPOLATION = "nearest"
# Tube labels as multi-hot (AVA-style, several actions per actor) instead of one class each.
_C.SYNTHESIS.MULTI_LABEL = False
# Background crop window: at least this fraction of the largest window with the clip's aspect.
_C.SYNTHESIS.BACKGROUND_MIN_SCALE = 0.8
# Probability of a slow synthetic camera motion (pan/zoom) of a background clip.
_C.SYNTHESIS.CAMERA_MOTION_PROB = 0.0
# Largest pan of the crop window over a clip, as a fraction of the window size.
_C.SYNTHESIS.CAMERA_PAN = 0.1
# Largest relative change of the crop window's size over a clip (zoom in or out).
_C.SYNTHESIS.CAMERA_ZOOM = 0.1
# Mix two synthesized clips: "none", "cutmix" (a rectangle in every frame) or "batchmix"
# (a spatio-temporal cuboid); the mixed sample has two sources (see docs/synthesis.md).
_C.SYNTHESIS.MIXER = "none"
# Smallest area of the mixed rectangle / cuboid (fraction of the frame).
_C.SYNTHESIS.MIX_AREA_MIN = 0.1
# Largest area of the mixed rectangle / cuboid (fraction of the frame).
_C.SYNTHESIS.MIX_AREA_MAX = 0.5
# Shortest BatchMix cuboid (fraction of the clip's frames).
_C.SYNTHESIS.MIX_DURATION_MIN = 0.5
# Longest BatchMix cuboid (fraction of the clip's frames).
_C.SYNTHESIS.MIX_DURATION_MAX = 1.0
# Horizontal flip probability of the provenance-aligned transforms (whole clip).
_C.SYNTHESIS.HFLIP_PROB = 0.0
# Random resized crop of the whole clip: smallest area fraction (1.0: off).
_C.SYNTHESIS.CROP_SCALE_MIN = 1.0

# ------------------------------------------------------------------------- guidance
_C.GUIDANCE = CfgNode()
# Add the provenance-based input-gradient penalty to the task loss.
_C.GUIDANCE.ENABLE = False
# "exact": differentiate the input gradient (double backward); "fd": finite-difference
# Hessian-vector product (one extra forward+backward, no double-backward kernels; accurate
# for smooth activations such as SiLU, approximate through ReLU); "counterfactual": no
# input gradient -- penalize the change of each actor's prediction when the synthesizer
# re-renders the same actors over a background of another scene (symmetric KL; needs a
# synthesized training set; the gradient-penalty keys below do not apply).
_C.GUIDANCE.MODE = "exact"
# Weight lambda of the penalty (>= 0).
_C.GUIDANCE.LAMBDA = 0.1
# Score whose input gradient is guided: "task_loss" (the task loss of the actors' labels),
# "logprob" (sum of log-probabilities of the labels), "logit" (sum of the labels' logits) or
# "logsumprob" (Right for the Right Reasons: sum of ALL classes' log-probabilities). For guided
# rows use "logit" (configs opt in): task_loss / logprob vanish as p -> 1 (a model pays the
# penalty by saturating) and, per source, softmax couples each row to the other source's logit
# (an ideal two-source model still pays R > 0; with logits R = 0). The default stays task_loss
# so that existing configs reproduce their numbers.
_C.GUIDANCE.SCORE = "task_loss"
# Normalization of the off-target energy: "none", "count" (divide by the number of
# off-target voxels), "ratio" (divide by the total energy, detached: in [0,1], but its gradient
# pushes the whole input gradient to shrink, 2R along g's own scale) or "share" (the same
# fraction with the denominator NOT detached: scale-invariant, no such push; recommended).
_C.GUIDANCE.NORM = "ratio"
# Penalty norm: "l2" (squared) or "l1".
_C.GUIDANCE.P = "l2"
# Target region: "union" (one mask, union of all labelled sources; one extra backward) or
# "per_source" (each ROI's score against its own source's mask; averaged over ROIs).
_C.GUIDANCE.REGION = "union"
# Ramp lambda linearly from 0 over this many epochs (the penalty's gradient dominates at init).
_C.GUIDANCE.WARMUP_EPOCHS = 1.0
# "energy" (norm of the non-target gradient) or "colour_shift" (squared derivative of the
# score along a uniform per-channel colour shift of the non-target region; needs P l2).
_C.GUIDANCE.PENALTY = "energy"
# Dilate the target mask by this many pixels before taking 1 - m (0: pixel-exact mask).
_C.GUIDANCE.TOLERANCE = 0
# Dilate the target mask by this many frames before taking 1 - m (0: off).
_C.GUIDANCE.TOLERANCE_FRAMES = 0
# Penalize the b x b block-averaged non-target gradient (low frequencies only); 0 or 1: off.
_C.GUIDANCE.LOWPASS = 0
# Weight frame t of the penalty by exp(-TEMPORAL_DECAY * |t - keyframe|); 0: uniform.
_C.GUIDANCE.TEMPORAL_DECAY = 0.0
# Frames where a source is absent count fully as non-target (automatic with alpha masks);
# False gives those frames weight 0 instead.
_C.GUIDANCE.ABSENT_FRAMES_OFF_TARGET = True
# FD mode: step h = FD_STEP * ||x|| / ||v|| (relative to the input batch's norm).
_C.GUIDANCE.FD_STEP = 1e-3
# FD mode: replay the first forward's ReLU / amax pattern in the extra forward, so FD
# matches exact through those kinks (False: plain forward difference, biased there).
_C.GUIDANCE.FD_FREEZE_KINKS = True
# Cap the penalty's parameter-gradient norm at MAX_RATIO x the task loss's (0: off; costs
# one extra first-order backward per step).
_C.GUIDANCE.MAX_RATIO = 0.0
# REGION per_source: each row's target = the union of its clip's sources with the same label
# (a same-class CutMix / BatchMix pair otherwise pays R >= 0.5 whatever the model). Recommended
# for mixing synthesizers; off by default (existing configs unchanged).
_C.GUIDANCE.MERGE_SAME_CLASS = False
# BatchNorm in the guided (input-gradient) forward: "train" (as the task loss: batch statistics
# with gradient, which couples each row's gradient to the other clips), "batch_constant" (the
# batch's statistics as constants: row b's gradient is d s_b / d x_b alone; recommended) or
# "eval" (running statistics). Not "train" costs one more forward with BatchNorm models.
_C.GUIDANCE.INNER_BN = "train"
# "fixed": lambda = GUIDANCE.LAMBDA. "balance_init": lambda set once on the first batch so that
# lambda ||grad R|| = ||grad L_task|| (GUIDANCE.LAMBDA unused; WARMUP_EPOCHS still ramps it),
# logged as guidance_lambda and kept in the checkpoint.
_C.GUIDANCE.LAMBDA_RULE = "fixed"
# counterfactual: also train on the re-rendered clip (task loss averaged over both renderings),
# as augmentation methods (StillMix, ActorCutMix) do. With LAMBDA 0 this is the
# augmentation-only control (configs/demo_cf_augment.yaml): the same renderings, no consistency term.
_C.GUIDANCE.CF_TASK_LOSS = False

# ----------------------------------------------------------------------------- demo
_C.DEMO = CfgNode()
# Seed of the generated demo data (banks and test split); separate from RNG_SEED so the
# same experiment can be repeated on freshly generated data.
_C.DEMO.SEED = 0
# Where the demo data is generated (created on first use, reused afterwards).
_C.DEMO.ROOT = "./datasets/demo"
# Procedural training actors per action class, each rendered when first drawn (stal.demo.banks).
# 4096 (E3, docs/efficacy.md; 24 before): a 15-epoch run draws about 45000 actors, so each is
# seen a few times and a model cannot learn the actors instead of their motion.
_C.DEMO.TUBES_PER_CLASS = 4096
# Procedural training background clips per scene type.
_C.DEMO.BACKGROUNDS_PER_SCENE = 12
# Videos in each AVA-format evaluation split: test, val (generated like test, other actors and
# scenes) and val_seen (the training actors); scenes independent of the actions.
_C.DEMO.TEST_VIDEOS = 96
# Keyframes (seconds) annotated per test video.
_C.DEMO.TEST_KEYFRAMES = 3
# Spread of the actors' resting arm angles, 0..1 (1: anywhere, so only motion tells the
# action; 0: one canonical pose, so single frames are informative too).
_C.DEMO.POSE_RANDOMNESS = 1.0
# Frames per second of the demo test videos (AVA itself: 30).
_C.DEMO.FPS = 8

# ---------------------------------------------------------------------------- image
# Image tasks as one-frame clips (DATA.NUM_FRAMES 1): TRAIN/TEST.DATASET "image_demo",
# "image_partner", "cub" or "imagefolder" train with CutMix (SYNTHESIS.MIX_AREA_MIN/MAX) and
# test WSOL / classification from CAMs (docs/image_tasks.md).
_C.IMAGE = CfgNode()
# CUB-200-2011 root (cub), or a folder holding train/<class>/* and val/<class>/* (imagefolder).
_C.IMAGE.ROOT = ""
# Probability that a training image is CutMixed with a second one (else used as it is).
_C.IMAGE.MIX_PROB = 1.0
# Each source's guidance target: "region" (its CutMix pixels, the paper's form) or "object"
# (those pixels that are the source's object: image demo only, the synthesizer knows them).
_C.IMAGE.PROVENANCE = "region"
# Horizontal flip probability of training images read from files (cub, imagefolder).
_C.IMAGE.HFLIP_PROB = 0.5
# Step of the CAM thresholds np.arange(0, 1, step) behind MaxBoxAccV2 / GT-known / Top-1 Loc:
# 0.001 as wsolevaluation's evaluate_wsol, CAMComputer and config.py; 0.01 is only its
# evaluation.py command-line default (the two can differ by many points; docs/evaluation.md).
_C.IMAGE.CAM_CURVE_INTERVAL = 0.001
# Image demo: scene crops per class photo in the training bank (and, disjoint, the test bank).
_C.IMAGE.DEMO_SCENES_PER_CLASS = 32
# Image demo: images of the validation split (training scene crops, scene independent of the
# class); the split on which settings are chosen.
_C.IMAGE.DEMO_VAL_IMAGES = 200
# Image demo: images of the test split (held-out scene crops, scene independent of the class).
_C.IMAGE.DEMO_TEST_IMAGES = 400
# TRAIN.DATASET image_partner (the partner-scene CutMix benchmark, issue 18): probability rho
# that the partner's photo (the pasted rectangle, which never covers the target object) is the
# photo of the *target's* class, else uniform; the target's own photo is always uniform, and
# SYNTHESIS.SCENE_BIAS is not used. 0: the unbiased control.
_C.IMAGE.PARTNER_SCENE_BIAS = 0.9

# ------------------------------------------------------------------------------ ava
# Paths and conventions of a prepared AVA dataset (PySlowFast names).
_C.AVA = CfgNode()
# Root of frames/<video_id>/<video_id>_%06d.jpg.
_C.AVA.FRAME_DIR = "./datasets/ava/frames"
# Directory holding the annotation CSVs and the label map.
_C.AVA.ANNOTATION_DIR = "./datasets/ava/annotations"
# Ground truth of the training split (in ANNOTATION_DIR).
_C.AVA.TRAIN_GT_BOX_LISTS = ["ava_train_v2.2.csv"]
# Ground truth evaluated at test time (in ANNOTATION_DIR).
_C.AVA.GROUNDTRUTH_FILE = "ava_val_v2.2.csv"
# Person boxes used at test time, detector CSV with scores (in ANNOTATION_DIR).
_C.AVA.TEST_PREDICT_BOX_LISTS = ["ava_val_predicted_boxes.csv"]
# Keyframes excluded from evaluation (in ANNOTATION_DIR).
_C.AVA.EXCLUSION_FILE = "ava_val_excluded_timestamps_v2.2.csv"
# Label map of the evaluated classes (in ANNOTATION_DIR).
_C.AVA.LABEL_MAP_FILE = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
# Person boxes with a detector score below this are dropped at test time.
_C.AVA.DETECTION_SCORE_THRESH = 0.9
# Frames per second of the extracted frames (keyframe index = (second - 900) * FPS).
_C.AVA.FPS = 30
# Read clips straight from VIDEO_DIR/<video_id>.mp4 (PyAV, same frames as extraction, 7-10x
# slower per clip) instead of FRAME_DIR; "" reads the extracted frames.
_C.AVA.VIDEO_DIR = ""

# ---------------------------------------------------------------------- ucf24 / jhmdb
# UCF101-24 and JHMDB-21 in the ACT layout: ROOT/rgb-images/<video>/%05d.jpg and
# ROOT/index/ written by data_prep/ucf24_from_act.py / jhmdb_from_act.py (stal.data.act).
_C.UCF24 = CfgNode()
# Dataset root (holds rgb-images/ and index/).
_C.UCF24.ROOT = "./datasets/ucf24"
# Split whose index is read (UCF101-24 has one).
_C.UCF24.SPLIT = 1
_C.JHMDB = CfgNode()
# Dataset root (holds rgb-images/ and index/).
_C.JHMDB.ROOT = "./datasets/jhmdb"
# Split whose index is read (1, 2 or 3; results are usually averaged over the three).
_C.JHMDB.SPLIT = 1


def get_cfg() -> CfgNode:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
