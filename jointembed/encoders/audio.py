"""Audio: a log-mel CNN trained from scratch (``audio_cnn``), or a Hugging Face speech encoder (``hf_audio``).

Input: ``{"waveform": FloatTensor (n, T), "lengths": LongTensor (n,)}``: mono clips at the encoder's sample rate,
zero-padded to the longest clip. Frames past a clip's length are excluded from pooling, so padding a batch more
does not change any embedding (exactly for ``audio_cnn`` and layer-norm wav2vec2 models, in eval mode). A bare
``(n, T)`` tensor means clips of full length; an optional ``"sample_rate"`` key is checked against the encoder's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jointembed.encoders.base import Encoder, ProjectionHead, masked_mean
from jointembed.encoders.hf import build_hf_model, portable_hf_config
from jointembed.registry import register_encoder

__all__ = ["AudioCNNEncoder", "HFAudioEncoder"]


class _AudioEncoder(Encoder):
    """Shared input handling of the audio encoders."""

    modality = "audio"
    sample_rate: int

    def _waveform(self, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Check the batch; return ``(n, T)`` float32 waveforms and ``(n,)`` lengths on the encoder's device."""
        if isinstance(inputs, torch.Tensor):
            inputs = {"waveform": inputs}
        if not isinstance(inputs, dict) or "waveform" not in inputs:
            raise TypeError(
                f"{type(self).__name__} expects {{'waveform': (n, T), 'lengths': (n,)}}, got {inputs!r:.80}"
            )
        rate = inputs.get("sample_rate")
        if rate is not None and int(rate) != self.sample_rate:
            raise ValueError(f"audio at {int(rate)} Hz given to an encoder built for {self.sample_rate} Hz")
        wave = inputs["waveform"]
        if not isinstance(wave, torch.Tensor) or wave.dim() != 2:
            raise ValueError(f"waveform must be a (n, T) tensor, got {getattr(wave, 'shape', type(wave).__name__)}")
        n, t = wave.shape
        lengths = inputs.get("lengths")
        lengths = torch.full((n,), t, dtype=torch.long) if lengths is None else torch.as_tensor(lengths).long()
        if lengths.shape != (n,) or bool((lengths < 0).any()) or bool((lengths > t).any()):
            raise ValueError(f"lengths must be (n,) = ({n},) values in [0, {t}], got {lengths.tolist()}")
        return wave.to(self.device, torch.float32), lengths.to(self.device)

    def example_inputs(self, batch_size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        t = self.sample_rate // 5
        lengths = torch.randint(t // 2, t + 1, (batch_size,), generator=g)
        lengths[:1] = t  # the longest clip fills the batch, as after collation
        wave = 0.1 * torch.randn(batch_size, t, generator=g) * (torch.arange(t) < lengths.unsqueeze(1))
        return {"waveform": wave, "lengths": lengths}


def _frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``(n, frames)`` bool, true for the first ``lengths[i]`` frames of row ``i``."""
    return torch.arange(frames, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


@register_encoder("audio_cnn")
class AudioCNNEncoder(_AudioEncoder):
    """Log-mel spectrogram → small 2-D CNN → masked mean over time → projection head.

    The log-mel features are normalised per clip (zero mean, unit variance over its own frames), which removes
    the recording's loudness. Each block is ``Conv3×3 → BatchNorm → ReLU → MaxPool2`` over (mel, time); frames
    past a clip's end are zeroed after every block and left out of the final mean. In training mode, optional
    SpecAugment masks ``num_masks`` random mel bands and time spans per clip. Output: ``(n, output_dim)``.

    Args:
        sample_rate: Sample rate of the input waveforms, in Hz (the data module resamples to it).
        n_mels: Number of mel bands.
        win_ms: STFT window length in milliseconds (the FFT size is the next power of two).
        hop_ms: Hop between frames in milliseconds.
        f_min: Lowest mel filter frequency, Hz.
        f_max: Highest mel filter frequency, Hz; ``None`` for half the sample rate.
        channels: Output channels of each CNN block.
        freq_mask_param: SpecAugment: widest masked band, in mel bins (0 disables).
        time_mask_param: SpecAugment: longest masked span, in frames (0 disables).
        num_masks: SpecAugment: number of frequency and of time masks per clip.
        output_dim: The shared dimension D.
        head_hidden_sizes: Hidden widths of the projection head; empty for a single linear layer.
    """

    #: Memory layout of the CNN's activations while its norms use their running statistics (inference, a frozen
    #: backbone): channels-last gives the default layout's values (to 1e-7) in about half the time.
    memory_format: torch.memory_format = torch.channels_last
    #: The layout in training: the default, because PyTorch's channels-last BatchNorm computes batch statistics
    #: far less accurately on the CPU (1e-3 against 6e-7 from float64 on the recipe's audio).
    train_memory_format: torch.memory_format = torch.contiguous_format

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 64,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        f_min: float = 0.0,
        f_max: float | None = None,
        channels: Sequence[int] = (32, 64, 128),
        freq_mask_param: int = 0,
        time_mask_param: int = 0,
        num_masks: int = 1,
        output_dim: int = 256,
        head_hidden_sizes: Sequence[int] = (),
    ) -> None:
        import torchaudio

        super().__init__()
        self._set_config(locals())
        if not channels:
            raise ValueError("channels needs at least one block width")
        self.sample_rate = sample_rate
        win_length = round(sample_rate * win_ms / 1000)
        self.hop_length = max(1, round(sample_rate * hop_ms / 1000))
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate,
            n_fft=2 ** math.ceil(math.log2(win_length)),
            win_length=win_length,
            hop_length=self.hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            pad_mode="constant",  # zero padding at the ends, exactly like the batch's zero padding
        )
        augment: list[nn.Module] = []
        for _ in range(num_masks):
            if freq_mask_param:
                augment.append(torchaudio.transforms.FrequencyMasking(freq_mask_param, iid_masks=True))
            if time_mask_param:
                augment.append(torchaudio.transforms.TimeMasking(time_mask_param, iid_masks=True))
        self.spec_augment = nn.Sequential(*augment)
        blocks, width = [], 1
        for out in channels:
            blocks.append(
                nn.Sequential(nn.Conv2d(width, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU())
            )
            width = out
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.feature_dim = width
        self.head = ProjectionHead(width, output_dim, head_hidden_sizes)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        augment = {"freq_mask_param": 2, "time_mask_param": 3}
        return {"sample_rate": 8000, "n_mels": 16, "channels": [4, 8], **augment, "output_dim": 8}

    def log_mel(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised log-mel features and frame mask of waveforms ``(n, T)`` with ``lengths`` ``(n,)``.

        Returns:
            ``(n, n_mels, frames)`` features, zero past each clip's end, and the ``(n, frames)`` bool mask.
        """
        with torch.autocast(wave.device.type, enabled=False):
            x = torch.log(self.mel(wave) + 1e-6)
        mask = _frame_mask(lengths // self.hop_length + 1, x.shape[-1])
        m = mask.unsqueeze(1).float()
        count = m.sum((1, 2), keepdim=True) * x.shape[1]
        mean = (x * m).sum((1, 2), keepdim=True) / count
        var = ((x - mean) ** 2 * m).sum((1, 2), keepdim=True) / count
        return (x - mean) / (var + 1e-5).sqrt() * m, mask

    def encode_backbone(self, inputs: Any) -> torch.Tensor:
        """Audio batch → ``(n, channels[-1])``."""
        wave, lengths = self._waveform(inputs)
        if wave.shape[0] == 0:
            return wave.new_zeros(0, self.feature_dim)
        x, mask = self.log_mel(wave, lengths)
        x = x.unsqueeze(1)  # (n, 1, mels, frames)
        if self.training and len(self.spec_augment):
            x = self.spec_augment(x)
        layout = self.train_memory_format if self.blocks.training else self.memory_format
        for block in self.blocks:
            # Channels-last after each block (a no-op after the first: the 1-channel input cannot carry the layout,
            # later blocks keep it), because max pooling runs 10-20x faster on it (CPU).
            x = block(x).contiguous(memory_format=layout)
            # Zeroing padded frames after ReLU (>= 0) makes the ceil-mode max pool ignore them as well.
            x = self.pool(x * mask[:, None, None, :])
            mask = _frame_mask((mask.sum(1) + 1) // 2, x.shape[-1])
        return masked_mean(x.mean(2).transpose(1, 2), mask)


@register_encoder("hf_audio")
class HFAudioEncoder(_AudioEncoder):
    """A Hugging Face raw-waveform speech encoder (wav2vec2, HuBERT, WavLM, data2vec-audio) via AutoModel.

    Waveforms are normalised per clip over their own samples (as ``Wav2Vec2FeatureExtractor`` does) and the
    last hidden states are averaged over each clip's own frames. Models with layer-norm feature extractors get
    an attention mask; group-norm ones (wav2vec2-base) take zero-padded input without one, as Hugging Face
    recommends. Spectrogram models (Whisper, AST) are not supported. Output: ``(n, output_dim)``.

    Args:
        model_name_or_path: Hub id or local folder of a pretrained model.
        config: Instead, a transformers config dict (with ``model_type``) for a randomly initialised model.
        sample_rate: Sample rate the model expects (16 kHz for all wav2vec2-family checkpoints).
        normalize: Normalise each clip to zero mean and unit variance (``do_normalize`` of the feature extractor).
        output_dim: The shared dimension D.
        head_hidden_sizes: Hidden widths of the projection head; empty for a single linear layer.
        local_files_only: Never download: read local folders and the Hugging Face cache only.
        cache_dir: Hugging Face cache folder, or ``None`` for the default.
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        config: dict[str, Any] | None = None,
        sample_rate: int = 16000,
        normalize: bool = True,
        output_dim: int = 256,
        head_hidden_sizes: Sequence[int] = (),
        local_files_only: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self._set_config(locals())
        self.sample_rate = sample_rate
        self.normalize = normalize
        self.backbone = build_hf_model(model_name_or_path, config, local_files_only, cache_dir)
        if not hasattr(self.backbone, "_get_feat_extract_output_lengths"):
            raise ValueError(
                f"hf_audio supports raw-waveform models (wav2vec2, hubert, wavlm, data2vec-audio), "
                f"not {type(self.backbone).__name__}"
            )
        self.use_attention_mask = getattr(self.backbone.config, "feat_extract_norm", "layer") == "layer"
        self.feature_dim = self.backbone.config.hidden_size
        self.head = ProjectionHead(self.feature_dim, output_dim, head_hidden_sizes)

    def save_to(self, folder: Path) -> dict[str, Any]:
        """A config that rebuilds the backbone from its architecture; the saved weights fill it."""
        return portable_hf_config(self.get_config(), self.backbone)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        conv = {"conv_dim": [16, 16], "conv_kernel": [10, 8], "conv_stride": [5, 4], "feat_extract_norm": "layer"}
        model = {"model_type": "wav2vec2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
        extra = {"intermediate_size": 37, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}
        return {"config": {**model, **conv, **extra, "mask_time_length": 2}, "output_dim": 8}

    def encode_backbone(self, inputs: Any) -> torch.Tensor:
        """Audio batch → ``(n, hidden_size)``."""
        wave, lengths = self._waveform(inputs)
        if wave.shape[0] == 0:
            return wave.new_zeros(0, self.feature_dim)
        valid = _frame_mask(lengths, wave.shape[1])
        if self.normalize:
            v = valid.float()
            count = v.sum(1, keepdim=True).clamp(min=1.0)
            mean = (wave * v).sum(1, keepdim=True) / count
            var = ((wave - mean) ** 2 * v).sum(1, keepdim=True) / count
            wave = (wave - mean) / (var + 1e-7).sqrt() * v
        mask = valid.long() if self.use_attention_mask else None
        hidden = self.backbone(wave, attention_mask=mask).last_hidden_state
        frames = self.backbone._get_feat_extract_output_lengths(lengths)
        return masked_mean(hidden, _frame_mask(frames, hidden.shape[1]))
