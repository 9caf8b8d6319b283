"""Training model bundles: data and split, training, calibration, evaluation, ONNX export.

Needs the training extra (`pip install '.[train]'`: torch, torchvision, timm, onnx, matplotlib,
tqdm); serving never imports this package. Kept free of imports so that `train_config` (the
defaults `python -m diagnosis train --help` shows) loads without torch.
"""
