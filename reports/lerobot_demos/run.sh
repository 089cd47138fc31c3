#!/usr/bin/env bash
# Worked example: scripted libero_object demos as a LeRobotDataset v3.0, then eval/libero.py on it.
set -euo pipefail
cd /work/main
export AVBR_LIBERO_ASSETS=$HOME/.cache/avbr/libero-assets MUJOCO_GL=egl PYOPENGL_PLATFORM=egl WANDB_MODE=disabled
python -m avbr.envs.make_demos suite=libero_object 'tasks=[0]' n_per_task=60 workers=2 out=/tmp/lr/demos format=lerobot \
  hydra.run.dir=/tmp/lr/hydra_demos
python eval/libero.py encoder=two_stream encoder.source=random encoder.arch=tiny encoder.img_size=64 \
  suite=libero_object 'tasks=[0]' episodes_per_task=20 'cameras=[agentview,wrist]' workers=2 videos_per_task=0 \
  wandb.mode=disabled demos.lerobot=/tmp/lr/demos/libero_object/lerobot demos.cache_dir=null \
  out_dir=/tmp/lr/libero_object_task0_lerobot
