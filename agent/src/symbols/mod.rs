//! Call stacks and names for the addresses spanlets carry. Empty for now;
//! the call-stack work fills it.
