// The MoE engine lives in this module: one file per architecture and per tokenizer kind.
