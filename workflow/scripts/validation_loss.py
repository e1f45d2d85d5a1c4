from codeparrot.eval.validation import validation_loss
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    validation_loss(snakemake.input.model, p.tokens_dir, snakemake.output[0],
                    seq_length=p.seq_length, max_sequences=p.max_sequences, batch_size=p.batch_size)
