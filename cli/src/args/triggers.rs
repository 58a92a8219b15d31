//! Arguments of `ferry triggers …`: webhooks that start a pipeline's runs.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum TriggersCommand {
    /// Make a webhook trigger of a pipeline: POST /hooks/NAME on the controller's HTTP
    /// listener starts a run. Prints the trigger's secret, once: keep it
    Create {
        /// The trigger's name: the URL path /hooks/NAME
        name: String,
        /// The pipeline it starts
        #[arg(long, value_name = "PIPELINE")]
        pipeline: String,
    },
    /// List the triggers: name, pipeline, the secret's fingerprint, when made
    List,
    /// Delete a trigger: its secret stops working at once; its runs stay
    Delete { name: String },
}
