"""Per-function model defaults (the plan's MODEL_CONFIG); an account's settings override them."""

MODEL_CONFIG = {
    "generate_images_from_prompts": {
        "model": "dall-e-3",  # the default when an OpenAI account names no model
        "max_tokens": None,  # not used for images
        "temperature": None,
        "response_format": None,
    },
}

# Which AIPrompt type holds a function's text prompt; image generation uses its templates instead.
FUNCTION_TO_PROMPT_TYPE = {
    "generate_images_from_prompts": None,
}
