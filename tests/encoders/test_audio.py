import pytest
import torch

from jointembed.encoders import AudioCNNEncoder, HFAudioEncoder


def _tiny(cls, **kwargs):
    torch.manual_seed(0)
    return cls(**{**cls.tiny_config(), **kwargs}).eval()


@pytest.mark.parametrize("cls", [AudioCNNEncoder, HFAudioEncoder])
def test_padding_does_not_change_embeddings(cls):
    encoder = _tiny(cls)
    batch = encoder.example_inputs(3, seed=1)
    wave, lengths = batch["waveform"], batch["lengths"]
    assert lengths[0] == wave.shape[1] and (lengths[1:] < wave.shape[1]).all()
    with torch.no_grad():
        reference = encoder(batch)
        more = encoder({"waveform": torch.cat([wave, torch.zeros(3, 777)], 1), "lengths": lengths})
        one_by_one = torch.cat([encoder(wave[i : i + 1, : int(n)]) for i, n in enumerate(lengths)])
    torch.testing.assert_close(more, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(one_by_one, reference, atol=1e-5, rtol=0)


def test_audio_cnn_frames_and_normalisation():
    encoder = _tiny(AudioCNNEncoder, sample_rate=8000)
    assert encoder.hop_length == 80 and encoder.mel.n_fft == 256  # 10 ms hop; 25 ms = 200 samples → 256
    wave = torch.randn(2, 1600)
    features, mask = encoder.log_mel(wave, torch.tensor([1600, 800]))
    assert features.shape == (2, 16, 21)
    assert mask.sum(1).tolist() == [21, 11]
    assert (features[1, :, 11:] == 0).all()
    valid = features[1, :, :11]
    torch.testing.assert_close(valid.mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(valid.std(unbiased=False), torch.tensor(1.0), atol=1e-3, rtol=0)
    loud, _ = encoder.log_mel(10 * wave, torch.tensor([1600, 800]))
    torch.testing.assert_close(loud, features, atol=1e-3, rtol=0)  # loudness is normalised away


def test_spec_augment_only_in_training():
    encoder = _tiny(AudioCNNEncoder, freq_mask_param=8, time_mask_param=10, num_masks=2)
    assert len(encoder.spec_augment) == 4
    batch = encoder.example_inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch), encoder(batch))
        encoder.train()
        torch.manual_seed(0)
        first = encoder(batch)
        torch.manual_seed(1)
        assert not torch.allclose(encoder(batch), first)
    assert len(_tiny(AudioCNNEncoder, freq_mask_param=0, time_mask_param=0).spec_augment) == 0


def test_audio_input_errors():
    encoder = _tiny(AudioCNNEncoder)
    wave = torch.zeros(2, 800)
    with pytest.raises(ValueError, match="audio at 16000 Hz given to an encoder built for 8000 Hz"):
        encoder({"waveform": wave, "lengths": torch.tensor([800, 800]), "sample_rate": 16000})
    with pytest.raises(ValueError, match=r"lengths must be \(n,\) = \(2,\) values in \[0, 800\]"):
        encoder({"waveform": wave, "lengths": torch.tensor([900, 800])})
    with pytest.raises(ValueError, match="waveform must be a"):
        encoder({"waveform": torch.zeros(800), "lengths": torch.tensor([800])})
    with pytest.raises(TypeError, match="expects"):
        encoder([wave])
    assert encoder({"waveform": wave, "lengths": torch.tensor([0, 800])}).isfinite().all()  # silent / empty clips


def test_hf_audio_attention_mask_only_for_layer_norm_models():
    assert _tiny(HFAudioEncoder).use_attention_mask
    config = HFAudioEncoder.tiny_config()
    config["config"] = {**config["config"], "feat_extract_norm": "group"}
    encoder = HFAudioEncoder(**config)
    assert not encoder.use_attention_mask
    assert encoder(encoder.example_inputs(2)).shape == (2, 8)


def test_hf_audio_refuses_models_without_waveform_frames():
    config = {"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2}
    with pytest.raises(ValueError, match="hf_audio supports raw-waveform models"):
        HFAudioEncoder(config=config)


def test_hf_audio_loads_a_saved_folder(tmp_path):
    encoder = _tiny(HFAudioEncoder)
    encoder.backbone.save_pretrained(tmp_path)
    loaded = HFAudioEncoder(str(tmp_path), output_dim=8).eval()
    batch = encoder.example_inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_backbone(batch), encoder.encode_backbone(batch))
