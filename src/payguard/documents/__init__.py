"""Documents rendered as Markdown and PDF (zh-CN and en), with charts drawn as images."""
