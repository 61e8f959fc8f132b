/** A runtime exiting with this code (EX_CONFIG) cannot serve the model: it is not restarted. */
export const EXIT_UNSERVABLE = 78;
