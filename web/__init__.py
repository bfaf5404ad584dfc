"""The township's back office on the web: cases seen and steered through the bot's own domain."""
