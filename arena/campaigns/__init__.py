"""Evaluation campaigns: release candidates judged by people on a fixed prompt set (docs/campaigns.md).

``model`` (records), ``formats`` (files in and out), ``generate`` (answers through the arena's own
backends and templates), ``chooser`` (which comparison a judge sees next), ``results`` (win/loss/draw,
Bradley-Terry, head-to-head, exports) and ``service`` (judging with the arena's guarantees).
"""
