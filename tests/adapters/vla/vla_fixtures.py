"""Tiny VLA configurations shared by the VLA tests (imported by conftest.py and the tests)."""

#: our two-stream encoder from the registry, as small as it goes: tiny preset, 3 blocks per stream,
#: 32 px (2x2 patches)
TWO_STREAM = {"encoder": {"name": "two_stream", "arch": "tiny", "img_size": 32, "model_kwargs": {"depth": 3}}, "max_tokens": 4}
TINY = {
    "pi0": dict(paligemma_variant="gemma_tiny", action_expert_variant="gemma_tiny_expert", vocab_size=None,
                chunk_size=4, n_action_steps=4, num_inference_steps=2, tokenizer_max_length=12, backbone=TWO_STREAM),
    "openvla": dict(llm_variant="llama_tiny", vocab_size=None, prompt_suffix_token_id=None, oft_chunk=4, backbone=TWO_STREAM),
}
