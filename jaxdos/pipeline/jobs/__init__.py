"""The pipeline's jobs: each is a frozen config and `run(config, out)`, and each command in
`experiments/` only parses its flags into that config and calls `run`.

    design           DesignConfig          targets -> DOS -> crystals -> oracle -> CIF / table
    generate         GenerateConfig        stage 2 alone from a DOS source (folder, .npz, CIF)
    tcm_screen       ScreenConfig          Table 4: TCM screen against unconditional CDOSGen
    te_translation   TranslationConfig     Table 5: crystal-to-crystal translation (TE-like)
    multi_property   MultiPropertyConfig   Tables 1, 3, 11: multi-property inverse design
    audit_dos        AuditConfig           Table 8: DOSSampler audit
    sample_dos       SampleDOSConfig       stage 1 alone: targets -> accepted DOS
    eval_crystal     EvalCrystalConfig     stage 2 alone: issue 12's realism goals
    eval_guidance    EvalGuidanceConfig    predictor-guided CDOSGen: TCM yield, E_BG MAE (oracle)
    eval_predictor   EvalPredictorConfig   Table 7: DOS predictor vs oracle and a baseline

They live in a subpackage, not as `jaxdos.pipeline.<job>`, because `jaxdos.pipeline.sample_dos`
is already the stage-1 function.
"""

__all__ = [
    "audit_dos",
    "design",
    "generate",
    "eval_crystal",
    "eval_guidance",
    "eval_predictor",
    "multi_property",
    "sample_dos",
    "tcm_screen",
    "te_translation",
]
