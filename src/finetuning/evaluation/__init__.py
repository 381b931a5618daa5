"""Benchmarks on the final model after the final save (`eval_conf`, config/evaluation.py).

    runner.run_benchmarks(eval_conf, final_dir, base_model, output_dir)   every benchmark, eval_results.json
    lm_eval_runner      type lm_eval: lm-evaluation-harness tasks (lm_eval.simple_evaluate)
    exact_match         type exact_match: greedy answers (the generate tool's code) == references
    human_eval          type human_eval: pass@1 of generated programs, only with allow_code_execution
    checks              what the pre-flight checks before the model loads
    tracking            eval/<benchmark>/<metric> to MLflow / W&B
    results             the run summary's Evaluation section

The recipe calls it through train/run.py's `evaluate` stage, between `save` and `report`.
"""
